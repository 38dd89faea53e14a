// eval_gpu of the selective-scan primitives. Real Metal only on macOS builds (_METAL_); elsewhere
// a clear error. The launch plan is in selective_scan_launch.h, shared with the emulated harness.
#include "selective_scan.h"

#include <stdexcept>

#ifdef _METAL_
#include <dlfcn.h>

#include <filesystem>

#include "mlx/backend/metal/device.h"
#include "selective_scan_launch.h"
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

MTL::Size mtl(const scan_launch::Size3& s) { return MTL::Size(s.x, s.y, s.z); }

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

void SelectiveScan::eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  using namespace scan_launch;
  check_float32(inputs, "SelectiveScan");
  for (auto& o : outputs) o.set_data(mx::allocator::malloc(o.nbytes()));
  const auto p = scan_params(inputs[0], inputs[2], flags_);
  const ScanInputs at(flags_);
  auto& s = stream();
  auto& d = mx::metal::device(s.device);
  auto* lib = d.get_library("dfnet4", library_dir());
  auto* kernel = d.get_kernel(forward_kernel(p.state), lib);
  auto& enc = mx::metal::get_command_encoder(s);
  enc.set_compute_pipeline_state(kernel);
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
  enc.dispatch_threads(mtl(forward_grid(p)), mtl(forward_group(p)));
}

void SelectiveScanGrad::eval_gpu(const std::vector<mx::array>& inputs,
                                 std::vector<mx::array>& outputs) {
  using namespace scan_launch;
  check_float32(inputs, "SelectiveScanGrad");
  for (auto& o : outputs) o.set_data(mx::allocator::malloc(o.nbytes()));
  const auto p = scan_params(inputs[0], inputs[2], flags_);
  const ScanInputs at(flags_, /*with_h0=*/false);
  const Outputs out_at(flags_);

  auto& s = stream();
  auto& d = mx::metal::device(s.device);
  auto& enc = mx::metal::get_command_encoder(s);
  auto* lib = d.get_library("dfnet4", library_dir());
  // Recompute scratch (sah, sa) and the partial sums; freed when the command buffer completes.
  const auto n_scratch = static_cast<int>(backward_scratch_elements(p));
  mx::array sah({n_scratch}, mx::float32, nullptr, {});
  mx::array sa({n_scratch}, mx::float32, nullptr, {});
  sah.set_data(mx::allocator::malloc(sah.nbytes()));
  sa.set_data(mx::allocator::malloc(sa.nbytes()));
  auto parts = scan_grad_partials(p, mx::float32);
  const int part_dD = (flags_ & dfk::kScanHasD) ? 3 : -1;
  const int part_dbias = (flags_ & dfk::kScanHasBias) ? (part_dD >= 0 ? 4 : 3) : -1;

  // 1. The backward kernel.
  enc.set_compute_pipeline_state(d.get_kernel(backward_kernel(p.state), lib));
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
  enc.set_bytes(p, kBwdParams);
  enc.dispatch_threads(mtl(backward_grid(p)), mtl(backward_group(p)));

  // 2. Fold the partials, in the plan's order (MLX orders the dispatches by their buffers).
  std::vector<std::pair<int, int>> folds = {{0, 2}, {1, 3}, {2, 4}};  // (partial, output)
  std::vector<int> targets = {kSumDA, kSumDB, kSumDC};
  if (part_dD >= 0) { folds.push_back({part_dD, out_at.dD}); targets.push_back(kSumDD); }
  if (part_dbias >= 0) { folds.push_back({part_dbias, out_at.dbias}); targets.push_back(kSumDbias); }
  auto* sum = d.get_kernel(sum_kernel(), lib);
  for (size_t f = 0; f < folds.size(); ++f) {
    const SumPlan plan = sum_plan(p, targets[f]);
    const int count = plan.count, inner = static_cast<int>(plan.inner);
    enc.set_compute_pipeline_state(sum);
    enc.set_input_array(parts[folds[f].first], kSumSrc);
    enc.set_output_array(outputs[folds[f].second], kSumDst);
    enc.set_bytes(count, kSumCount);
    enc.set_bytes(inner, kSumInner);
    enc.dispatch_threads(mtl(sum_grid(plan)), mtl(sum_group(plan)));
  }
  enc.add_temporary(sah);
  enc.add_temporary(sa);
  enc.add_temporaries(std::move(parts));
}

#else  // no Metal in this build

void SelectiveScan::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error(
      "dfnet4.ops.selective_scan: this build of dfnet4 has no GPU support (Metal kernels are built "
      "on macOS only); run it on the CPU stream, e.g. with mx.stream(mx.cpu)");
}

void SelectiveScanGrad::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error(
      "dfnet4.ops.selective_scan: this build of dfnet4 has no GPU support (Metal kernels are built "
      "on macOS only); run it on the CPU stream, e.g. with mx.stream(mx.cpu)");
}

#endif

}  // namespace dfnet4
