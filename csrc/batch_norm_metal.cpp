// eval_gpu of the batch-norm primitives (Metal builds only; elsewhere FlaggedPrimitive's error).
// The launch plan is in batch_norm_launch.h, shared with the emulated harness; device, kernels and
// buffers come through metal_host.h.
#include "batch_norm.h"

#ifdef _METAL_

#include "batch_norm_launch.h"
#include "metal_host.h"

namespace dfnet4 {

// Forward: block statistics -> per-channel fold (mean, var) -> the normalised (+ ReLU) output.
// Each dispatch reads what the one before wrote, so MLX puts a barrier between them.
void BatchNormTrain::eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  using namespace bn_launch;
  namespace mh = metal_host;
  auto& d = mh::begin_gpu_eval(stream(), names_.op, "BatchNormTrain", in, out);
  const auto p = bn_params(in[0], flags_);
  const float eps = static_cast<float>(attrs_.eps);
  auto& enc = mx::metal::get_command_encoder(stream());
  auto parts = bn_partials(p, mx::float32);  // the blocks' partial statistics
  enc.add_temporaries(parts);               // freed when the command buffer completes
  mx::array& part_mean = parts[0];
  mx::array& part_m2 = parts[1];

  enc.set_compute_pipeline_state(mh::kernel(d, names_, stats_kernel()));
  enc.set_input_array(in[0], kStatsX);
  enc.set_output_array(part_mean, kStatsPartMean);
  enc.set_output_array(part_m2, kStatsPartM2);
  enc.set_bytes(p, kStatsParams);
  enc.dispatch_threads(mh::size(block_grid(p)), mh::size(block_group(p)));

  enc.set_compute_pipeline_state(mh::kernel(d, names_, combine_kernel()));
  enc.set_input_array(part_mean, kCombinePartMean);
  enc.set_input_array(part_m2, kCombinePartM2);
  enc.set_output_array(out[1], kCombineMean);
  enc.set_output_array(out[2], kCombineVar);
  enc.set_bytes(p, kCombineParams);
  enc.dispatch_threads(mh::size(channel_grid(p)), mh::size(channel_group(p)));

  enc.set_compute_pipeline_state(mh::kernel(d, names_, apply_kernel()));
  enc.set_input_array(in[0], kApplyX);
  enc.set_input_array(in[1], kApplyWeight);
  enc.set_input_array(in[2], kApplyBias);
  enc.set_input_array(out[1], kApplyMean);
  enc.set_input_array(out[2], kApplyVar);
  enc.set_output_array(out[0], kApplyY);
  enc.set_bytes(p, kApplyParams);
  enc.set_bytes(eps, kApplyEps);
  enc.dispatch_threads(mh::size(block_grid(p)), mh::size(block_group(p)));
}

// Backward: block sums of the gradient terms -> per-channel fold (dweight, dbias) -> dx.
void BatchNormTrainGrad::eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  using namespace bn_launch;
  namespace mh = metal_host;
  auto& d = mh::begin_gpu_eval(stream(), names_.op, "BatchNormTrainGrad", in, out);
  const auto p = bn_params(in[0], flags_);
  const float eps = static_cast<float>(attrs_.eps);
  auto& enc = mx::metal::get_command_encoder(stream());
  auto parts = bn_partials(p, mx::float32);  // the blocks' partial gradient sums
  enc.add_temporaries(parts);               // freed when the command buffer completes
  mx::array& part_g = parts[0];
  mx::array& part_gx = parts[1];
  // inputs: x, weight, bias, mean, var, dy, dmean, dvar; outputs: dx, dweight, dbias

  enc.set_compute_pipeline_state(mh::kernel(d, names_, grad_stats_kernel()));
  enc.set_input_array(in[0], kGStatsX);
  enc.set_input_array(in[1], kGStatsWeight);
  enc.set_input_array(in[2], kGStatsBias);
  enc.set_input_array(in[3], kGStatsMean);
  enc.set_input_array(in[4], kGStatsVar);
  enc.set_input_array(in[5], kGStatsDy);
  enc.set_output_array(part_g, kGStatsPartG);
  enc.set_output_array(part_gx, kGStatsPartGx);
  enc.set_bytes(p, kGStatsParams);
  enc.set_bytes(eps, kGStatsEps);
  enc.dispatch_threads(mh::size(block_grid(p)), mh::size(block_group(p)));

  enc.set_compute_pipeline_state(mh::kernel(d, names_, grad_combine_kernel()));
  enc.set_input_array(part_g, kGCombinePartG);
  enc.set_input_array(part_gx, kGCombinePartGx);
  enc.set_input_array(in[4], kGCombineVar);
  enc.set_output_array(out[1], kGCombineDweight);
  enc.set_output_array(out[2], kGCombineDbias);
  enc.set_bytes(p, kGCombineParams);
  enc.set_bytes(eps, kGCombineEps);
  enc.dispatch_threads(mh::size(channel_grid(p)), mh::size(channel_group(p)));

  enc.set_compute_pipeline_state(mh::kernel(d, names_, grad_apply_kernel()));
  enc.set_input_array(in[0], kGApplyX);
  enc.set_input_array(in[1], kGApplyWeight);
  enc.set_input_array(in[2], kGApplyBias);
  enc.set_input_array(in[3], kGApplyMean);
  enc.set_input_array(in[4], kGApplyVar);
  enc.set_input_array(in[5], kGApplyDy);
  enc.set_input_array(in[6], kGApplyDmean);
  enc.set_input_array(in[7], kGApplyDvar);
  enc.set_input_array(out[1], kGApplyDweight);
  enc.set_input_array(out[2], kGApplyDbias);
  enc.set_output_array(out[0], kGApplyDx);
  enc.set_bytes(p, kGApplyParams);
  enc.set_bytes(eps, kGApplyEps);
  enc.dispatch_threads(mh::size(block_grid(p)), mh::size(block_group(p)));
}

}  // namespace dfnet4

#endif  // _METAL_
