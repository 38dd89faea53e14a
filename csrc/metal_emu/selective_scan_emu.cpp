// Emulated-Metal harness of the selective scan: compiles metal/selective_scan.metal as C++ against
// metal/emu and runs it with the launch plan of eval_gpu (csrc/selective_scan_launch.h). The tests
// (tests/test_selective_scan_emu.py) compare its outputs with the CPU primitive's.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "registry.h"

#include <metal_stdlib>
#include "emu_launch.h"
#include "selective_scan.metal"
#include "selective_scan_launch.h"
#include "emu_end.h"
#include "emu_harness.h"

namespace nb = nanobind;
using metal_emu::LaunchOptions;
using metal_emu::ThreadPos;
using namespace metal_emu::harness;

namespace {

dfk::ScanParams params(const In& u, const In& A, int flags) {
  if (u.ndim() != 3 || A.ndim() != 2) throw std::invalid_argument("u must be 3-D and A 2-D");
  return dfk::make_scan_params(int(u.shape(0)), int(u.shape(1)), int(u.shape(2)), int(A.shape(1)), flags);
}

int flags_of(bool has_D, bool has_z, bool has_bias, bool softplus, bool has_h0) {
  return (has_D ? dfk::kScanHasD : 0) | (has_z ? dfk::kScanHasZ : 0) |
         (has_bias ? dfk::kScanHasBias : 0) | (softplus ? dfk::kScanSoftplus : 0) |
         (has_h0 ? dfk::kScanHasH0 : 0);
}

// Calls f.template operator()<MAXN, NFIX>() for the instantiation eval_gpu would pick.
template <typename F>
void with_variant(int state, F&& f) {
  const auto v = dfnet4::scan_launch::variant(state);
  if (v.max_state == 16 && v.fixed == 16) f.template operator()<16, 16>();
  else if (v.max_state == 16 && v.fixed == 0) f.template operator()<16, 0>();
  else if (v.max_state == 64 && v.fixed == 0) f.template operator()<64, 0>();
  else throw std::logic_error("selective_scan_emu: no kernel instantiated for this variant");
}

nb::tuple forward(In u, In delta, In A, In B, In C, std::optional<In> D, std::optional<In> z,
                  std::optional<In> bias, std::optional<In> h0, bool softplus,
                  const std::string& order, uint64_t seed) {
  namespace L = dfnet4::scan_launch;
  const auto p = params(u, A, flags_of(D.has_value(), z.has_value(), bias.has_value(), softplus,
                                       h0.has_value()));
  const size_t b = p.batch, l = p.length, d = p.channels, n = p.state;
  Buffer out("out", {b, l, d}), last("last_state", {b, d, n}),
      ckpt("checkpoints", {b, size_t(p.n_chunks), n, d});
  const LaunchOptions o = metal_emu::launch_options(order, seed);
  dfk::ScanParams pc = p;  // the kernels take `constant ScanParams&`, a plain reference here
  with_variant(p.state, [&]<int MAXN, int NFIX>() {
    dispatch(L::forward_grid(p), L::forward_group(p), o, [&](uint3 gid) {
      dfnet4_selective_scan_fwd<MAXN, NFIX>(u.data(), delta.data(), A.data(), B.data(), C.data(), opt(D), opt(z),
                                            opt(bias), opt(h0), out.ptr(), last.ptr(), ckpt.ptr(), pc,
                                            uint2(gid.x, gid.y));
    });
  });
  return nb::make_tuple(out.release(), last.release(), ckpt.release());
}

// Returns (du, ddelta, dA, dB, dC, dh0, dz, dD, dbias, out); dz, dD, dbias are None when z, D or
// delta_bias is absent, out unless emit_out. Runs the backward kernel, then the sum kernel over each partial.
nb::tuple backward(In u, In delta, In A, In B, In C, std::optional<In> D, std::optional<In> z,
                   std::optional<In> bias, In ckpt, In dout, In dlast, bool softplus, bool emit_out,
                   const std::string& order, uint64_t seed) {
  namespace L = dfnet4::scan_launch;
  auto p = params(u, A, flags_of(D.has_value(), z.has_value(), bias.has_value(), softplus, false));
  if (emit_out) p.flags |= dfk::kScanBwdOut;
  const size_t b = p.batch, l = p.length, d = p.channels, n = p.state, blocks = p.n_blocks;
  Buffer du("du", {b, l, d}), ddelta("ddelta", {b, l, d}), dh0("dh0", {b, d, n}),
      dz("dz", {z ? b : 0, l, d}), out("out", {emit_out ? b : 0, l, d});
  Buffer dA("dA", {d, n}), dB("dB", {b, l, n}), dC("dC", {b, l, n}), dD("dD", {D ? d : 0}),
      dbias("ddelta_bias", {bias ? d : 0});
  // Partials and recompute scratch: device memory of eval_gpu (uninitialised there, poisoned here).
  Buffer pA("dA_part", {b, d, n}), pB("dB_part", {b, blocks, l, n}), pC("dC_part", {b, blocks, l, n}),
      pD("dD_part", {D ? b : 0, d}), pbias("dbias_part", {bias ? b : 0, d});
  const size_t n_scratch = L::backward_scratch_elements(p);
  metal_emu::DeviceBuffer<float> sah("sah", n_scratch), sa("sa", n_scratch);
  const LaunchOptions o = metal_emu::launch_options(order, seed);
  dfk::ScanParams pc = p;  // `constant ScanParams&` is a plain reference here
  with_variant(p.state, [&]<int MAXN, int NFIX>() {
    // dispatch_threads itself: this kernel also takes threads_per_grid and the SIMD lane
    metal_emu::dispatch_threads(u3(L::backward_grid(p)), u3(L::backward_group(p)), o,
                                [&](const ThreadPos& t, void* const*) {
      dfnet4_selective_scan_bwd<MAXN, NFIX>(
          u.data(), delta.data(), A.data(), B.data(), C.data(), opt(D), opt(z), opt(bias),
          ckpt.data(), dout.data(), dlast.data(), du.ptr(), ddelta.ptr(), dz.ptr(), pA.ptr(),
          pB.ptr(), pC.ptr(), pD.ptr(), pbias.ptr(), dh0.ptr(), sah.data(), sa.data(), out.ptr(), pc,
          uint2(t.thread_position_in_grid.x, t.thread_position_in_grid.y),
          uint2(t.threads_per_grid.x, t.threads_per_grid.y), t.thread_index_in_simdgroup);
    });
  });
  struct Fold { const float* src; float* dst; int target; };
  for (const Buffer* part : {&pA, &pB, &pC, &pD, &pbias}) part->check();
  sah.check_bounds();
  sa.check_bounds();
  std::vector<Fold> folds = {{pA.ptr(), dA.ptr(), L::kSumDA}, {pB.ptr(), dB.ptr(), L::kSumDB},
                             {pC.ptr(), dC.ptr(), L::kSumDC}};
  if (D) folds.push_back({pD.ptr(), dD.ptr(), L::kSumDD});
  if (bias) folds.push_back({pbias.ptr(), dbias.ptr(), L::kSumDbias});
  for (const auto& f : folds) {
    const auto plan = L::sum_plan(p, f.target);
    int count = plan.count, inner = int(plan.inner);
    dispatch(L::sum_grid(plan), L::sum_group(plan), o, [&](uint3 gid) {
      dfnet4_selective_scan_sum_f32(f.src, f.dst, count, inner, uint2(gid.x, gid.y));
    });
  }
  nb::object none = nb::none();
  return nb::make_tuple(du.release(), ddelta.release(), dA.release(), dB.release(), dC.release(),
                        dh0.release(), z ? nb::cast(dz.release()) : none,
                        D ? nb::cast(dD.release()) : none, bias ? nb::cast(dbias.release()) : none,
                        emit_out ? nb::cast(out.release()) : none);
}

void bind(nb::module_& m) {
  auto s = m.def_submodule("selective_scan",
                           "metal/selective_scan.metal run on the emulator with eval_gpu's launch plan");
  s.def("forward", &forward, nb::arg("u"), nb::arg("delta"), nb::arg("A"), nb::arg("B"), nb::arg("C"),
        nb::arg("D").none(), nb::arg("z").none(), nb::arg("delta_bias").none(), nb::arg("h0").none(),
        nb::arg("delta_softplus"), nb::arg("order") = "forward", nb::arg("seed") = 0,
        "Returns (out, last_state, checkpoints).");
  s.def("backward", &backward, nb::arg("u"), nb::arg("delta"), nb::arg("A"), nb::arg("B"),
        nb::arg("C"), nb::arg("D").none(), nb::arg("z").none(), nb::arg("delta_bias").none(),
        nb::arg("checkpoints"), nb::arg("dout"), nb::arg("dlast"), nb::arg("delta_softplus"),
        nb::arg("emit_out") = false, nb::arg("order") = "forward", nb::arg("seed") = 0,
        "Returns (du, ddelta, dA, dB, dC, dh0, dz, dD, dbias, out); out (the forward's output, "
        "re-formed) only with emit_out.");
  s.attr("CHUNK") = int(dfk::kScanChunk);
  s.attr("BLOCK") = int(dfk::kScanBlock);
  s.def("forward_kernel", &dfnet4::scan_launch::forward_kernel);
  s.def("backward_kernel", &dfnet4::scan_launch::backward_kernel);
}

}  // namespace

DFNET4_REGISTER_BINDING(bind);
