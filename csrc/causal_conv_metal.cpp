// eval_gpu of the causal-conv primitives (Metal builds only; elsewhere FlaggedPrimitive's error).
// The launch plan is in causal_conv_launch.h, shared with the emulated harness; device, kernels and
// buffers come through metal_host.h.
#include "causal_conv.h"

#ifdef _METAL_

#include "causal_conv_launch.h"
#include "metal_host.h"

namespace dfnet4 {

void CausalConv1d::eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  using namespace conv_launch;
  namespace mh = metal_host;
  auto& d = mh::begin_gpu_eval(stream(), names_.op, "CausalConv1d", inputs, outputs);
  const auto p = conv_params(inputs[0], inputs[1], flags_);
  const ConvInputs at(flags_);
  auto& enc = mx::metal::get_command_encoder(stream());
  enc.set_compute_pipeline_state(mh::kernel(d, names_, forward_kernel(p.width)));
  enc.set_input_array(inputs[0], kFwdX);
  // Absent optional inputs: bind x; the kernel never reads them (flags).
  enc.set_input_array(at.window >= 0 ? inputs[at.window] : inputs[0], kFwdWindow);
  enc.set_input_array(inputs[1], kFwdWeight);
  enc.set_input_array(at.bias >= 0 ? inputs[at.bias] : inputs[0], kFwdBias);
  enc.set_output_array(outputs[0], kFwdY);
  // A K = 1 conv has an empty new window: bind y, never written (no rows).
  enc.set_output_array(outputs[1].size() > 0 ? outputs[1] : outputs[0], kFwdNewWindow);
  enc.set_bytes(p, kFwdParams);
  enc.dispatch_threads(mh::size(grid(p)), mh::size(group(p)));
}

void CausalConv1dGrad::eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  using namespace conv_launch;
  namespace mh = metal_host;
  auto& d = mh::begin_gpu_eval(stream(), names_.op, "CausalConv1dGrad", inputs, outputs);
  const auto p = conv_params(inputs[0], inputs[1], flags_);
  const ConvInputs at(flags_);
  const Outputs out_at(flags_);
  auto& enc = mx::metal::get_command_encoder(stream());
  auto parts = conv_grad_partials(p, mx::float32);  // freed when the command buffer completes

  // 1. The backward kernel.
  enc.set_compute_pipeline_state(mh::kernel(d, names_, backward_kernel(p.width)));
  enc.set_input_array(inputs[0], kBwdX);
  enc.set_input_array(at.window >= 0 ? inputs[at.window] : inputs[0], kBwdWindow);
  enc.set_input_array(inputs[1], kBwdWeight);
  enc.set_input_array(at.bias >= 0 ? inputs[at.bias] : inputs[0], kBwdBias);
  enc.set_input_array(inputs[at.next], kBwdDy);
  // dnew_window is empty for K = 1 (never read): bind dy instead.
  const auto& dnw = inputs[at.next + 1];
  enc.set_input_array(dnw.size() > 0 ? dnw : inputs[at.next], kBwdDnewWindow);
  enc.set_output_array(outputs[0], kBwdDx);
  // Absent optional outputs: bind the dweight partials; the kernel never writes them (flags).
  enc.set_output_array(out_at.dwindow >= 0 ? outputs[out_at.dwindow] : parts[0], kBwdDwindow);
  enc.set_output_array(parts[0], kBwdDwPart);
  enc.set_output_array(parts.size() > 1 ? parts[1] : parts[0], kBwdDbPart);
  enc.set_bytes(p, kBwdParams);
  enc.dispatch_threads(mh::size(grid(p)), mh::size(group(p)));

  // 2. Fold the partials: dweight, then dbias (MLX orders the dispatches by their buffers).
  auto* sum = mh::kernel(d, names_, sum_kernel());
  auto fold = [&](const mx::array& src, mx::array& dst, const SumPlan& plan) {
    const int count = plan.count, inner = static_cast<int>(plan.inner);
    enc.set_compute_pipeline_state(sum);
    enc.set_input_array(src, kSumSrc);
    enc.set_output_array(dst, kSumDst);
    enc.set_bytes(count, kSumCount);
    enc.set_bytes(inner, kSumInner);
    enc.dispatch_threads(mh::size(sum_grid(plan)), mh::size(sum_group(plan)));
  };
  fold(parts[0], outputs[1], dweight_sum(p));
  if (out_at.dbias >= 0) fold(parts[1], outputs[out_at.dbias], dbias_sum(p));
  enc.add_temporaries(std::move(parts));
}

}  // namespace dfnet4

#endif  // _METAL_
