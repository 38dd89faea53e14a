// eval_gpu of the causal-conv primitives. Real Metal only on macOS builds (_METAL_); elsewhere a
// clear error. The launch plan is in causal_conv_launch.h, shared with the emulated harness.
#include "causal_conv.h"

#include <stdexcept>

#ifdef _METAL_
#include <dlfcn.h>

#include <filesystem>

#include "causal_conv_launch.h"
#include "mlx/backend/metal/device.h"
#endif

namespace dfnet4 {

#ifdef _METAL_

namespace {

// dfnet4.metallib is installed next to the extension module.
const std::string& library_dir() {
  static const std::string dir = [] {
    Dl_info info;
    if (!dladdr(reinterpret_cast<void*>(&library_dir), &info)) {
      throw std::runtime_error("dfnet4: cannot locate the extension to find dfnet4.metallib");
    }
    return std::filesystem::path(info.dli_fname).parent_path().string();
  }();
  return dir;
}

MTL::Size mtl(const conv_launch::Size3& s) { return MTL::Size(s.x, s.y, s.z); }

void check_float32(const std::vector<mx::array>& inputs, const char* prim) {
  for (const auto& a : inputs) {
    if (a.dtype() != mx::float32) {
      throw std::runtime_error(std::string(prim) + ": the Metal kernels take float32 only");
    }
    if (!a.flags().row_contiguous) {
      throw std::runtime_error(std::string(prim) + ": inputs must be row-contiguous");
    }
  }
}

}  // namespace

void CausalConv1d::eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  using namespace conv_launch;
  check_float32(inputs, "CausalConv1d");
  for (auto& o : outputs) o.set_data(mx::allocator::malloc(o.nbytes()));
  const auto p = conv_params(inputs[0], inputs[1], flags_);
  const ConvInputs at(flags_);
  auto& s = stream();
  auto& d = mx::metal::device(s.device);
  auto* lib = d.get_library("dfnet4", library_dir());
  auto& enc = mx::metal::get_command_encoder(s);
  enc.set_compute_pipeline_state(d.get_kernel(forward_kernel(p.width), lib));
  enc.set_input_array(inputs[0], kFwdX);
  // Absent optional inputs: bind x; the kernel never reads them (flags).
  enc.set_input_array(at.window >= 0 ? inputs[at.window] : inputs[0], kFwdWindow);
  enc.set_input_array(inputs[1], kFwdWeight);
  enc.set_input_array(at.bias >= 0 ? inputs[at.bias] : inputs[0], kFwdBias);
  enc.set_output_array(outputs[0], kFwdY);
  // A K = 1 conv has an empty new window: bind y, never written (no rows).
  enc.set_output_array(outputs[1].size() > 0 ? outputs[1] : outputs[0], kFwdNewWindow);
  enc.set_bytes(p, kFwdParams);
  enc.dispatch_threads(mtl(grid(p)), mtl(group(p)));
}

void CausalConv1dGrad::eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  using namespace conv_launch;
  check_float32(inputs, "CausalConv1dGrad");
  for (auto& o : outputs) o.set_data(mx::allocator::malloc(o.nbytes()));
  const auto p = conv_params(inputs[0], inputs[1], flags_);
  const ConvInputs at(flags_);
  const Outputs out_at(flags_);
  auto& s = stream();
  auto& d = mx::metal::device(s.device);
  auto& enc = mx::metal::get_command_encoder(s);
  auto* lib = d.get_library("dfnet4", library_dir());
  auto parts = conv_grad_partials(p, mx::float32);  // freed when the command buffer completes

  // 1. The backward kernel.
  enc.set_compute_pipeline_state(d.get_kernel(backward_kernel(p.width), lib));
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
  enc.dispatch_threads(mtl(grid(p)), mtl(group(p)));

  // 2. Fold the partials: dweight, then dbias (MLX orders the dispatches by their buffers).
  auto* sum = d.get_kernel(sum_kernel(), lib);
  auto fold = [&](const mx::array& src, mx::array& dst, const SumPlan& plan) {
    const int count = plan.count, inner = static_cast<int>(plan.inner);
    enc.set_compute_pipeline_state(sum);
    enc.set_input_array(src, kSumSrc);
    enc.set_output_array(dst, kSumDst);
    enc.set_bytes(count, kSumCount);
    enc.set_bytes(inner, kSumInner);
    enc.dispatch_threads(mtl(sum_grid(plan)), mtl(sum_group(plan)));
  };
  fold(parts[0], outputs[1], dweight_sum(p));
  if (out_at.dbias >= 0) fold(parts[1], outputs[out_at.dbias], dbias_sum(p));
  enc.add_temporaries(std::move(parts));
}

#else  // no Metal in this build

void CausalConv1d::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error(
      "dfnet4.ops.causal_conv1d: this build of dfnet4 has no GPU support (Metal kernels are built on "
      "macOS only); run it on the CPU stream, e.g. with mx.stream(mx.cpu)");
}

void CausalConv1dGrad::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error(
      "dfnet4.ops.causal_conv1d: this build of dfnet4 has no GPU support (Metal kernels are built on "
      "macOS only); run it on the CPU stream, e.g. with mx.stream(mx.cpu)");
}

#endif

}  // namespace dfnet4
