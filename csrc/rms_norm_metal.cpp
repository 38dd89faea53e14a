// eval_gpu of the RMSNorm primitives (Metal builds only; elsewhere FlaggedPrimitive's error).
// The launch plan is in rms_norm_launch.h, shared with the emulated harness; device, kernels and
// buffers come through metal_host.h.
#include "rms_norm.h"

#ifdef _METAL_

#include <algorithm>

#include "metal_host.h"
#include "rms_norm_launch.h"

namespace dfnet4 {

// Forward: one dispatch, one SIMD group per row.
void RmsNorm::eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  using namespace rms_launch;
  namespace mh = metal_host;
  auto& d = mh::begin_gpu_eval(stream(), names_.op, "RmsNorm", in, out);
  const auto p = rms_params(in[0]);
  if (p.rows == 0) return;  // nothing to write
  const float eps = static_cast<float>(attrs_.eps);
  auto& enc = mx::metal::get_command_encoder(stream());
  enc.set_compute_pipeline_state(mh::kernel(d, names_, forward_kernel()));
  enc.set_input_array(in[0], kFwdX);
  enc.set_input_array(in[1], kFwdWeight);
  enc.set_output_array(out[0], kFwdY);
  enc.set_bytes(p, kFwdParams);
  enc.set_bytes(eps, kFwdEps);
  enc.dispatch_threads(mh::size(forward_grid(p)), mh::size(forward_group(p)));
}

// Backward: dx and the blocks' dweight partials (one SIMD group per block of rows), then the fold
// per channel in block order. The fold reads what the first dispatch wrote, so MLX puts a barrier
// between them.
void RmsNormGrad::eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  using namespace rms_launch;
  namespace mh = metal_host;
  auto& d = mh::begin_gpu_eval(stream(), names_.op, "RmsNormGrad", in, out);
  const auto p = rms_params(in[0]);
  const float eps = static_cast<float>(attrs_.eps);
  auto& enc = mx::metal::get_command_encoder(stream());
  // inputs: x, weight, dy; outputs: dx, dweight. At least one partial row, so the buffer is never
  // empty (with no rows the fold reads none of it and writes zeros).
  mx::array part = mh::scratch({std::max(p.n_blocks, 1), p.channels}, enc);

  if (p.rows > 0) {
    enc.set_compute_pipeline_state(mh::kernel(d, names_, backward_kernel()));
    enc.set_input_array(in[0], kBwdX);
    enc.set_input_array(in[1], kBwdWeight);
    enc.set_input_array(in[2], kBwdDy);
    enc.set_output_array(out[0], kBwdDx);
    enc.set_output_array(part, kBwdPart);
    enc.set_bytes(p, kBwdParams);
    enc.set_bytes(eps, kBwdEps);
    enc.dispatch_threads(mh::size(backward_grid(p)), mh::size(backward_group(p)));
  }

  enc.set_compute_pipeline_state(mh::kernel(d, names_, fold_kernel()));
  enc.set_input_array(part, kFoldPart);
  enc.set_output_array(out[1], kFoldDweight);
  enc.set_bytes(p, kFoldParams);
  enc.dispatch_threads(mh::size(channel_grid(p)), mh::size(channel_group(p)));
}

}  // namespace dfnet4

#endif  // _METAL_
