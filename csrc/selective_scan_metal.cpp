// eval_gpu of the selective-scan primitives (Metal builds only; elsewhere FlaggedPrimitive's
// error). The launch plan is in selective_scan_launch.h, shared with the emulated harness; device,
// kernels and buffers come through metal_host.h.
#include "selective_scan.h"

#ifdef _METAL_

#include "metal_host.h"
#include "selective_scan_launch.h"

namespace dfnet4 {

void SelectiveScan::eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  using namespace scan_launch;
  namespace mh = metal_host;
  auto& d = mh::begin_gpu_eval(stream(), names_.op, "SelectiveScan", inputs, outputs);
  const auto p = scan_params(inputs[0], inputs[2], flags_);
  const ScanInputs at(flags_);
  auto& enc = mx::metal::get_command_encoder(stream());
  enc.set_compute_pipeline_state(mh::kernel(d, names_, forward_kernel(p.state)));
  for (int i = 0; i < 5; ++i) enc.set_input_array(inputs[i], i);
  // Absent optional inputs: bind u; the kernel never reads them (flags).
  enc.set_input_array(at.D >= 0 ? inputs[at.D] : inputs[0], kFwdD);
  enc.set_input_array(at.z >= 0 ? inputs[at.z] : inputs[0], kFwdZ);
  enc.set_input_array(at.bias >= 0 ? inputs[at.bias] : inputs[0], kFwdBias);
  enc.set_input_array(at.h0 >= 0 ? inputs[at.h0] : inputs[0], kFwdH0);
  enc.set_output_array(outputs[0], kFwdOut);
  enc.set_output_array(outputs[1], kFwdLast);
  enc.set_output_array(outputs[2], kFwdCkpt);
  enc.set_bytes(p, kFwdParams);
  enc.dispatch_threads(mh::size(forward_grid(p)), mh::size(forward_group(p)));
}

void SelectiveScanGrad::eval_gpu(const std::vector<mx::array>& inputs,
                                 std::vector<mx::array>& outputs) {
  using namespace scan_launch;
  namespace mh = metal_host;
  auto& d = mh::begin_gpu_eval(stream(), names_.op, "SelectiveScanGrad", inputs, outputs);
  const auto p = scan_params(inputs[0], inputs[2], flags_);
  const ScanInputs at(flags_, /*with_h0=*/false);
  const Outputs out_at(flags_);

  auto& enc = mx::metal::get_command_encoder(stream());
  // Recompute scratch (sah, sa) and the partial sums; freed when the command buffer completes.
  const auto n_scratch = static_cast<int>(backward_scratch_elements(p));
  mx::array sah = mh::scratch({n_scratch}, enc);
  mx::array sa = mh::scratch({n_scratch}, enc);
  auto parts = scan_grad_partials(p, mx::float32);
  const int part_dD = (flags_ & dfk::kScanHasD) ? 3 : -1;
  const int part_dbias = (flags_ & dfk::kScanHasBias) ? (part_dD >= 0 ? 4 : 3) : -1;

  // 1. The backward kernel.
  enc.set_compute_pipeline_state(mh::kernel(d, names_, backward_kernel(p.state)));
  for (int i = 0; i < 5; ++i) enc.set_input_array(inputs[i], i);
  enc.set_input_array(at.D >= 0 ? inputs[at.D] : inputs[0], kBwdD);
  enc.set_input_array(at.z >= 0 ? inputs[at.z] : inputs[0], kBwdZ);
  enc.set_input_array(at.bias >= 0 ? inputs[at.bias] : inputs[0], kBwdBias);
  enc.set_input_array(inputs[at.next], kBwdCkpt);
  enc.set_input_array(inputs[at.next + 1], kBwdDout);
  enc.set_input_array(inputs[at.next + 2], kBwdDlast);
  enc.set_output_array(outputs[0], kBwdDu);
  enc.set_output_array(outputs[1], kBwdDdelta);
  // Absent optional outputs: bind the scratch; the kernel never writes them (flags).
  enc.set_output_array(out_at.dz >= 0 ? outputs[out_at.dz] : sa, kBwdDz);
  enc.set_output_array(parts[0], kBwdDA);
  enc.set_output_array(parts[1], kBwdDB);
  enc.set_output_array(parts[2], kBwdDC);
  enc.set_output_array(part_dD >= 0 ? parts[part_dD] : sa, kBwdDD);
  enc.set_output_array(part_dbias >= 0 ? parts[part_dbias] : sa, kBwdDbias);
  enc.set_output_array(outputs[5], kBwdDh0);
  enc.set_output_array(sah, kBwdSah);
  enc.set_output_array(sa, kBwdSa);
  enc.set_output_array(out_at.out >= 0 ? outputs[out_at.out] : sa, kBwdOut);
  enc.set_bytes(p, kBwdParams);
  enc.dispatch_threads(mh::size(backward_grid(p)), mh::size(backward_group(p)));

  // 2. Fold the partials, in the plan's order (MLX orders the dispatches by their buffers).
  std::vector<std::pair<int, int>> folds = {{0, 2}, {1, 3}, {2, 4}};  // (partial, output)
  std::vector<int> targets = {kSumDA, kSumDB, kSumDC};
  if (part_dD >= 0) { folds.push_back({part_dD, out_at.dD}); targets.push_back(kSumDD); }
  if (part_dbias >= 0) { folds.push_back({part_dbias, out_at.dbias}); targets.push_back(kSumDbias); }
  auto* sum = mh::kernel(d, names_, sum_kernel());
  for (size_t f = 0; f < folds.size(); ++f) {
    const SumPlan plan = sum_plan(p, targets[f]);
    const int count = plan.count, inner = static_cast<int>(plan.inner);
    enc.set_compute_pipeline_state(sum);
    enc.set_input_array(parts[folds[f].first], kSumSrc);
    enc.set_output_array(outputs[folds[f].second], kSumDst);
    enc.set_bytes(count, kSumCount);
    enc.set_bytes(inner, kSumInner);
    enc.dispatch_threads(mh::size(sum_grid(plan)), mh::size(sum_group(plan)));
  }
  enc.add_temporaries(std::move(parts));
}

}  // namespace dfnet4

#endif  // _METAL_
