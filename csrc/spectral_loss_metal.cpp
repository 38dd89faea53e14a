// eval_gpu of the compressed-spectral-loss primitives (Metal builds only; elsewhere
// FlaggedPrimitive's error). The launch plan is in spectral_loss_launch.h, shared with the emulated
// harness; device, kernels and buffers come through metal_host.h. complex64 inputs are read as their
// float (re, im) pairs.
#include "spectral_loss.h"

#ifdef _METAL_

#include "metal_host.h"
#include "spectral_loss_launch.h"

namespace dfnet4 {

// Per-chunk partial sums, then their fold in chunk order (it reads what the first dispatch wrote,
// so MLX puts a barrier between them).
void CompressedSpectralLoss::eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  using namespace sl_launch;
  namespace mh = metal_host;
  auto& d = mh::begin_gpu_eval(stream(), names_.op, "CompressedSpectralLoss", in, out, mh::kFloatPairs);
  const auto p = sl_params(in[0], flags_);
  const float gamma = static_cast<float>(attrs_.gamma);
  auto& enc = mx::metal::get_command_encoder(stream());
  auto parts = sl_partials(p, mx::float32);  // the chunks' partial sums
  enc.add_temporaries(parts);               // freed when the command buffer completes
  mx::array& part = parts[0];

  enc.set_compute_pipeline_state(mh::kernel(d, names_, forward_kernel()));
  enc.set_input_array(in[0], kFwdPred);
  enc.set_input_array(in[1], kFwdTarget);
  enc.set_output_array(part, kFwdPart);
  enc.set_bytes(p, kFwdParams);
  enc.set_bytes(gamma, kFwdGamma);
  enc.dispatch_threads(mh::size(chunk_grid(p)), mh::size(chunk_group(p)));

  enc.set_compute_pipeline_state(mh::kernel(d, names_, fold_kernel()));
  enc.set_input_array(part, kFoldPart);
  enc.set_output_array(out[0], kFoldMag);
  enc.set_output_array(out[1], kFoldCplx);
  enc.set_bytes(p, kFoldParams);
  enc.dispatch_threads(mh::size(fold_grid()), mh::size(fold_group()));
}

void CompressedSpectralLossGrad::eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  using namespace sl_launch;
  namespace mh = metal_host;
  auto& d = mh::begin_gpu_eval(stream(), names_.op, "CompressedSpectralLossGrad", in, out, mh::kFloatPairs);
  const auto p = sl_params(in[0], flags_);
  const float gamma = static_cast<float>(attrs_.gamma);
  auto& enc = mx::metal::get_command_encoder(stream());
  // inputs: pred, target, dmag, dcplx; outputs: dpred and/or dtarget (flags). A gradient not asked
  // for binds the other one's buffer: the kernel never writes it (flags).
  const bool want_pred = has(dfk::kSlGradPred);
  mx::array& dpred = out[0];
  mx::array& dtarget = out[want_pred && has(dfk::kSlGradTarget) ? 1 : 0];

  enc.set_compute_pipeline_state(mh::kernel(d, names_, backward_kernel()));
  enc.set_input_array(in[0], kBwdPred);
  enc.set_input_array(in[1], kBwdTarget);
  enc.set_input_array(in[2], kBwdDmag);
  enc.set_input_array(in[3], kBwdDcplx);
  enc.set_output_array(dpred, kBwdDpred);
  enc.set_output_array(dtarget, kBwdDtarget);
  enc.set_bytes(p, kBwdParams);
  enc.set_bytes(gamma, kBwdGamma);
  enc.dispatch_threads(mh::size(chunk_grid(p)), mh::size(chunk_group(p)));
}

}  // namespace dfnet4

#endif  // _METAL_
