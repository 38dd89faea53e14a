// Selective scan primitives: op builder, shapes, vjp and the CPU evaluation. eval_gpu lives in
// selective_scan_metal.cpp, the CPU loops in selective_scan_cpu.cpp, the math in kernels/.
#include "selective_scan.h"

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <stdexcept>

#include "mlx/backend/cpu/encoder.h"
#include "primitive_util.h"
#include "registry.h"
#include "selective_scan_cpu.h"

namespace dfnet4 {

namespace {

using util::opt_ptr;
using util::ptr;

constexpr util::ArgumentCheck check{"selective_scan"};

}  // namespace

ScanInputs::ScanInputs(int flags, bool with_h0) {
  if (flags & dfk::kScanHasD) D = next++;
  if (flags & dfk::kScanHasZ) z = next++;
  if (flags & dfk::kScanHasBias) bias = next++;
  if (with_h0 && (flags & dfk::kScanHasH0)) h0 = next++;
}

dfk::ScanParams scan_params(const mx::array& u, const mx::array& A, int flags) {
  return dfk::make_scan_params(u.shape(0), u.shape(1), u.shape(2), A.shape(1), flags);
}

// ---- forward primitive ------------------------------------------------------------------------------

std::vector<mx::Shape> SelectiveScan::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& u = inputs[0];
  const auto& A = inputs[2];
  const int b = u.shape(0), l = u.shape(1), d = u.shape(2), n = A.shape(1);
  const int chunks = (l + dfk::kScanChunk - 1) / dfk::kScanChunk;
  return {u.shape(), {b, d, n}, {b, chunks, n, d}};  // checkpoints: channels last
}

void SelectiveScan::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  auto& enc = util::begin_cpu_eval("SelectiveScan", stream(), inputs, outputs);
  const auto p = scan_params(inputs[0], inputs[2], flags_);
  const ScanInputs at(flags_);

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    scan_cpu::ForwardBuffers<T> f{ptr<T>(inputs[0]), ptr<T>(inputs[1]), ptr<T>(inputs[2]),
                                  ptr<T>(inputs[3]), ptr<T>(inputs[4]), opt_ptr<T>(inputs, at.D),
                                  opt_ptr<T>(inputs, at.z), opt_ptr<T>(inputs, at.bias),
                                  opt_ptr<T>(inputs, at.h0), outputs[0].data<T>(),
                                  outputs[1].data<T>(), outputs[2].data<T>()};
    enc.dispatch([p, f]() { scan_cpu::forward(p, f); });
  };
  util::for_float_dtype(inputs[0], "SelectiveScan", launch);
}

std::vector<mx::array> SelectiveScan::vjp(const std::vector<mx::array>& primals,
                                          const std::vector<mx::array>& cotangents,
                                          const std::vector<int>& argnums,
                                          const std::vector<mx::array>& outputs) {
  const ScanInputs at(flags_);
  const auto s = stream();
  const auto dtype = primals[0].dtype();
  // Backward inputs: the forward's inputs without h0 (checkpoint 0 holds it), then checkpoints and
  // the cotangents of out and last_state (zeros when unused).
  std::vector<mx::array> inputs(primals.begin(), primals.begin() + 5);
  for (int idx : {at.D, at.z, at.bias}) {
    if (idx >= 0) inputs.push_back(primals[idx]);
  }
  inputs.push_back(outputs[2]);
  for (int k = 0; k < 2; ++k) inputs.push_back(util::cotangent(cotangents[k], dtype, s));
  auto grads = util::apply(std::make_shared<SelectiveScanGrad>(s, flags_), std::move(inputs), dtype);
  const SelectiveScanGrad::Outputs out_at(flags_);
  std::vector<mx::array> result;
  for (int arg : argnums) {
    if (arg >= 0 && arg <= 4) result.push_back(grads[arg]);  // du, ddelta, dA, dB, dC
    else if (arg == at.D) result.push_back(grads[out_at.dD]);
    else if (arg == at.z) result.push_back(grads[out_at.dz]);
    else if (arg == at.bias) result.push_back(grads[out_at.dbias]);
    else if (arg == at.h0) result.push_back(grads[5]);
    else throw std::logic_error("SelectiveScan::vjp: unknown argument index");
  }
  return result;
}

// ---- backward primitive -----------------------------------------------------------------------------

SelectiveScanGrad::Outputs::Outputs(int flags) {
  int next = 6;
  if (flags & dfk::kScanHasZ) dz = next++;
  if (flags & dfk::kScanHasD) dD = next++;
  if (flags & dfk::kScanHasBias) dbias = next++;
  if (flags & dfk::kScanBwdOut) out = next++;
}

std::vector<mx::Shape> SelectiveScanGrad::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& u = inputs[0];
  const auto& A = inputs[2];
  const int b = u.shape(0), l = u.shape(1), d = u.shape(2), n = A.shape(1);
  std::vector<mx::Shape> shapes = {u.shape(), u.shape(), {d, n}, {b, l, n}, {b, l, n}, {b, d, n}};
  if (flags_ & dfk::kScanHasZ) shapes.push_back(u.shape());
  if (flags_ & dfk::kScanHasD) shapes.push_back({d});
  if (flags_ & dfk::kScanHasBias) shapes.push_back({d});
  if (flags_ & dfk::kScanBwdOut) shapes.push_back(u.shape());
  return shapes;
}

std::vector<mx::array> scan_grad_partials(const dfk::ScanParams& p, mx::Dtype dtype) {
  const int b = p.batch, l = p.length, d = p.channels, n = p.state, blocks = p.n_blocks;
  std::vector<mx::Shape> shapes = {{b, d, n}, {b, blocks, l, n}, {b, blocks, l, n}};
  if (p.flags & dfk::kScanHasD) shapes.push_back({b, d});
  if (p.flags & dfk::kScanHasBias) shapes.push_back({b, d});
  return util::work_arrays(shapes, dtype);
}

void SelectiveScanGrad::eval_cpu(const std::vector<mx::array>& inputs,
                                 std::vector<mx::array>& outputs) {
  auto& enc = util::begin_cpu_eval("SelectiveScanGrad", stream(), inputs, outputs);
  const auto p = scan_params(inputs[0], inputs[2], flags_);
  const ScanInputs at(flags_, /*with_h0=*/false);
  const Outputs out_at(flags_);
  const int ckpt = at.next, dout = at.next + 1, dlast = at.next + 2;
  // Partials: dA (batch, channels, state), dB and dC (batch, blocks, time, state), then dD and
  // dbias (batch, channels) when present; temporaries held until the dispatched task has run.
  auto parts = scan_grad_partials(p, inputs[0].dtype());
  const int part_dD = (flags_ & dfk::kScanHasD) ? 3 : -1;
  const int part_dbias = (flags_ & dfk::kScanHasBias) ? (part_dD >= 0 ? 4 : 3) : -1;

  auto launch = [&](auto zero) {
    using T = decltype(zero);
    auto out_ptr = [&](int idx) { return idx >= 0 ? outputs[idx].data<T>() : nullptr; };
    auto part_ptr = [&](int idx) { return idx >= 0 ? parts[idx].data<T>() : nullptr; };
    scan_cpu::BackwardBuffers<T> g{
        ptr<T>(inputs[0]), ptr<T>(inputs[1]), ptr<T>(inputs[2]), ptr<T>(inputs[3]),
        ptr<T>(inputs[4]), opt_ptr<T>(inputs, at.D), opt_ptr<T>(inputs, at.z),
        opt_ptr<T>(inputs, at.bias), ptr<T>(inputs[ckpt]), ptr<T>(inputs[dout]),
        ptr<T>(inputs[dlast]), out_ptr(0), out_ptr(1), out_ptr(out_at.dz), out_ptr(out_at.out),
        part_ptr(0), part_ptr(1), part_ptr(2), part_ptr(part_dD), part_ptr(part_dbias), out_ptr(5)};
    struct Fold {
      const T* src;
      T* dst;
      int outer, count;
      long inner;
    };
    std::vector<Fold> folds = {
        {part_ptr(0), out_ptr(2), 1, p.batch, long(p.channels) * p.state},
        {part_ptr(1), out_ptr(3), p.batch, p.n_blocks, long(p.length) * p.state},
        {part_ptr(2), out_ptr(4), p.batch, p.n_blocks, long(p.length) * p.state}};
    if (part_dD >= 0) folds.push_back({part_ptr(part_dD), out_ptr(out_at.dD), 1, p.batch, p.channels});
    if (part_dbias >= 0) {
      folds.push_back({part_ptr(part_dbias), out_ptr(out_at.dbias), 1, p.batch, p.channels});
    }
    enc.dispatch([p, g, folds = std::move(folds)]() {
      scan_cpu::backward(p, g);
      for (const auto& f : folds) scan_cpu::sum_partials(f.src, f.dst, f.outer, f.count, f.inner);
    });
  };
  util::for_float_dtype(inputs[0], "SelectiveScanGrad", launch);
  enc.add_temporaries(std::move(parts));
}

// ---- the ops ----------------------------------------------------------------------------------------

namespace {

// The forward's inputs checked (std::invalid_argument naming the argument) and made contiguous,
// with the flags they imply (the backward passes no h0: its checkpoints hold it).
struct CheckedInputs {
  util::InputList list;
  int flags;
};

CheckedInputs check_inputs(const mx::array& u, const mx::array& delta, const mx::array& A, const mx::array& B,
                           const mx::array& C, const std::optional<mx::array>& D,
                           const std::optional<mx::array>& z, const std::optional<mx::array>& delta_bias,
                           bool delta_softplus, const std::optional<mx::array>& h0, const mx::Stream& s) {
  using util::shape_str;
  if (u.ndim() != 3) check.bad("u must have shape (batch, time, channels), got " + shape_str(u));
  if (A.ndim() != 2) check.bad("A must have shape (channels, state), got " + shape_str(A));
  const int b = u.shape(0), l = u.shape(1), d = u.shape(2), n = A.shape(1);
  if (b < 1 || l < 1 || d < 1) check.bad("u must have batch, time and channels >= 1, got " + shape_str(u));
  if (n < 1 || n > dfk::kScanMaxState) {
    check.bad("A must have 1 to " + std::to_string(dfk::kScanMaxState) + " states (A.shape[1]), got " +
              shape_str(A));
  }
  check.shape("delta", delta, {b, l, d}, "(batch, time, channels) like u");
  check.shape("A", A, {d, n}, "(channels, state) with u's channels");
  check.shape("B", B, {b, l, n}, "(batch, time, state)");
  check.shape("C", C, {b, l, n}, "(batch, time, state)");
  if (D) check.shape("D", *D, {d}, "(channels,)");
  if (z) check.shape("z", *z, {b, l, d}, "(batch, time, channels) like u");
  if (delta_bias) check.shape("delta_bias", *delta_bias, {d}, "(channels,)");
  if (h0) check.shape("h0", *h0, {b, d, n}, "(batch, channels, state)");
  const auto dtype = u.dtype();
  util::check_compute_dtype(check.op, dtype, s);

  CheckedInputs in{util::InputList(check.op, "u", dtype, s), delta_softplus ? dfk::kScanSoftplus : 0};
  in.list.add("u", u);
  in.list.add("delta", delta);
  in.list.add("A", A);
  in.list.add("B", B);
  in.list.add("C", C);
  if (D) { in.flags |= dfk::kScanHasD; in.list.add("D", *D); }
  if (z) { in.flags |= dfk::kScanHasZ; in.list.add("z", *z); }
  if (delta_bias) { in.flags |= dfk::kScanHasBias; in.list.add("delta_bias", *delta_bias); }
  if (h0) { in.flags |= dfk::kScanHasH0; in.list.add("h0", *h0); }
  return in;
}

}  // namespace

std::vector<mx::array> selective_scan_checkpointed(const mx::array& u, const mx::array& delta, const mx::array& A,
                                                   const mx::array& B, const mx::array& C,
                                                   const std::optional<mx::array>& D,
                                                   const std::optional<mx::array>& z,
                                                   const std::optional<mx::array>& delta_bias, bool delta_softplus,
                                                   const std::optional<mx::array>& h0, mx::StreamOrDevice s_) {
  const auto s = mx::to_stream(s_);
  auto in = check_inputs(u, delta, A, B, C, D, z, delta_bias, delta_softplus, h0, s);
  return util::apply(std::make_shared<SelectiveScan>(s, in.flags), in.list.arrays(), u.dtype());
}

std::vector<mx::array> selective_scan(const mx::array& u, const mx::array& delta, const mx::array& A,
                                      const mx::array& B, const mx::array& C,
                                      const std::optional<mx::array>& D,
                                      const std::optional<mx::array>& z,
                                      const std::optional<mx::array>& delta_bias, bool delta_softplus,
                                      const std::optional<mx::array>& h0, mx::StreamOrDevice s) {
  auto outs = selective_scan_checkpointed(u, delta, A, B, C, D, z, delta_bias, delta_softplus, h0, s);
  return {outs[0], outs[1]};
}

std::vector<mx::array> selective_scan_backward(const mx::array& u, const mx::array& delta, const mx::array& A,
                                               const mx::array& B, const mx::array& C,
                                               const std::optional<mx::array>& D,
                                               const std::optional<mx::array>& z,
                                               const std::optional<mx::array>& delta_bias, bool delta_softplus,
                                               const mx::array& checkpoints, const mx::array& dout,
                                               const mx::array& dlast, mx::StreamOrDevice s_) {
  const auto s = mx::to_stream(s_);
  auto in = check_inputs(u, delta, A, B, C, D, z, delta_bias, delta_softplus, std::nullopt, s);
  const int b = u.shape(0), l = u.shape(1), d = u.shape(2), n = A.shape(1);
  const int chunks = (l + dfk::kScanChunk - 1) / dfk::kScanChunk;
  check.shape("checkpoints", checkpoints, {b, chunks, n, d},
              "(batch, ceil(time / SELECTIVE_SCAN_CHUNK), state, channels), as the checkpointed forward returns "
              "them for these inputs");
  check.shape("dout", dout, {b, l, d}, "(batch, time, channels) like u");
  check.shape("dlast", dlast, {b, d, n}, "(batch, channels, state)");
  in.list.add("checkpoints", checkpoints);
  in.list.add("dout", dout);
  in.list.add("dlast", dlast);
  return util::apply(std::make_shared<SelectiveScanGrad>(s, in.flags | dfk::kScanBwdOut), in.list.arrays(),
                     u.dtype());
}

// ---- bindings ---------------------------------------------------------------------------------------

static void bind_selective_scan(nanobind::module_& m) {
  namespace nb = nanobind;
  using namespace nb::literals;
  m.def("selective_scan", &selective_scan, "u"_a, "delta"_a, "A"_a, "B"_a, "C"_a, "D"_a.none(),
        "z"_a.none(), "delta_bias"_a.none(), "delta_softplus"_a, "h0"_a.none(), nb::kw_only(),
        "stream"_a = nb::none(),
        "Fused selective scan (low level: same-dtype float32/float64 arrays). Returns [out, "
        "last_state]. Use dfnet4.ops.selective_scan.");
  m.def("selective_scan_checkpointed", &selective_scan_checkpointed, "u"_a, "delta"_a, "A"_a, "B"_a, "C"_a,
        "D"_a.none(), "z"_a.none(), "delta_bias"_a.none(), "delta_softplus"_a, "h0"_a.none(), nb::kw_only(),
        "stream"_a = nb::none(),
        "selective_scan that also returns its checkpoints: [out, last_state, checkpoints]. Use "
        "dfnet4.ops.selective_scan_checkpointed.");
  m.def("selective_scan_backward", &selective_scan_backward, "u"_a, "delta"_a, "A"_a, "B"_a, "C"_a,
        "D"_a.none(), "z"_a.none(), "delta_bias"_a.none(), "delta_softplus"_a, "checkpoints"_a, "dout"_a,
        "dlast"_a, nb::kw_only(), "stream"_a = nb::none(),
        "The scan's backward from its checkpoints: [du, ddelta, dA, dB, dC, dh0, (dz), (dD), (ddelta_bias), "
        "out]. Use dfnet4.ops.selective_scan_backward.");
  m.attr("SELECTIVE_SCAN_CHUNK") = static_cast<int>(dfk::kScanChunk);
  m.attr("SELECTIVE_SCAN_MAX_STATE") = static_cast<int>(dfk::kScanMaxState);
}
DFNET4_REGISTER_BINDING(bind_selective_scan);

}  // namespace dfnet4
