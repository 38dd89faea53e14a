// eval_gpu of the depthwise frequency-conv primitives (Metal builds only; elsewhere
// FlaggedPrimitive's error). The launch plan is in depthwise_conv_launch.h, shared with the emulated
// harness; device, kernels and buffers come through metal_host.h.
#include "depthwise_conv.h"

#ifdef _METAL_

#include "depthwise_conv_launch.h"
#include "metal_host.h"

namespace dfnet4 {

namespace {

// One gather (big -> small) or scatter (small -> big) dispatch.
void encode_map(mx::metal::Device& d, const OpNames& names, mx::metal::CommandEncoder& enc, const dfk::DwParams& p,
                bool scatter, const mx::array& in, const mx::array& weight, mx::array& out) {
  using namespace dw_launch;
  namespace mh = metal_host;
  enc.set_compute_pipeline_state(mh::kernel(d, names, scatter ? scatter_kernel() : gather_kernel()));
  enc.set_input_array(in, kMapIn);
  enc.set_input_array(weight, kMapWeight);
  enc.set_output_array(out, kMapOut);
  enc.set_bytes(p, kMapParams);
  enc.dispatch_threads(mh::size(block_grid(p)), mh::size(block_group(p)));
}

}  // namespace

void DepthwiseConv::eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  namespace mh = metal_host;
  auto& d = mh::begin_gpu_eval(stream(), names_.op, "DepthwiseConv", in, out);
  const auto p = dw_params(in[0], in[1], attrs_, flags_);
  auto& enc = mx::metal::get_command_encoder(stream());
  encode_map(d, names_, enc, p, has(dfk::kDwTransposed), in[0], in[1], out[0]);
}

// dx is the other map of dy; dweight pairs the big and small sides in per-block partials, then the
// fold (it reads the partials the first dispatch wrote, so MLX puts a barrier between them).
void DepthwiseConvGrad::eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  using namespace dw_launch;
  namespace mh = metal_host;
  auto& d = mh::begin_gpu_eval(stream(), names_.op, "DepthwiseConvGrad", in, out);
  const auto p = dw_params(in[0], in[1], attrs_, flags_);
  const bool transposed = has(dfk::kDwTransposed), want_x = has(kDwWantX);
  auto& enc = mx::metal::get_command_encoder(stream());
  // inputs: x, weight, dy; outputs: dx and/or dweight
  if (want_x) encode_map(d, names_, enc, p, !transposed, in[2], in[1], out[0]);
  if (!has(kDwWantWeight)) return;
  auto parts = dw_partials(p, mx::float32);  // the blocks' partial weight gradients
  enc.add_temporaries(parts);               // freed when the command buffer completes
  mx::array& part = parts[0];
  enc.set_compute_pipeline_state(mh::kernel(d, names_, weight_grad_kernel()));
  enc.set_input_array(transposed ? in[2] : in[0], kWgBig);
  enc.set_input_array(transposed ? in[0] : in[2], kWgSmall);
  enc.set_output_array(part, kWgPart);
  enc.set_bytes(p, kWgParams);
  enc.dispatch_threads(mh::size(block_grid(p)), mh::size(block_group(p)));

  enc.set_compute_pipeline_state(mh::kernel(d, names_, fold_kernel()));
  enc.set_input_array(part, kFoldPart);
  enc.set_output_array(out[want_x ? 1 : 0], kFoldDweight);
  enc.set_bytes(p, kFoldParams);
  enc.dispatch_threads(mh::size(fold_grid(p)), mh::size(fold_group(p)));
}

}  // namespace dfnet4

#endif  // _METAL_
