// Emulated-Metal harness of the compressed spectral loss: compiles metal/spectral_loss.metal as C++
// against metal/emu and runs it with the launch plan of eval_gpu (csrc/spectral_loss_launch.h).
// The tests (tests/test_spectral_loss_emu.py) compare its outputs with the CPU primitive's.
#include <nanobind/stl/string.h>

#include <stdexcept>
#include <string>

#include "registry.h"

#include <metal_stdlib>
#include "emu_launch.h"
#include "spectral_loss.metal"
#include "spectral_loss_launch.h"
#include "emu_end.h"
#include "emu_harness.h"

namespace nb = nanobind;
using metal_emu::LaunchOptions;
using metal_emu::launch_options;
using namespace metal_emu::harness;

namespace {

// pred, target: (pairs, 2) float32 (re, im).
dfk::SlParams params(const In& pred, const In& target, int flags) {
  if (pred.ndim() != 2 || pred.shape(1) != 2) throw std::invalid_argument("pred must be (pairs, 2)");
  if (target.ndim() != 2 || target.shape(0) != pred.shape(0) || target.shape(1) != 2) {
    throw std::invalid_argument("target must have pred's shape");
  }
  return dfk::make_sl_params(int(pred.shape(0)), flags);
}

nb::tuple forward(In pred, In target, float gamma, const std::string& order, uint64_t seed) {
  namespace L = dfnet4::sl_launch;
  const auto p = params(pred, target, 0);
  Buffer part("part", {size_t(p.n_chunks), 2}), mag("mag", {}), cplx("cplx", {});
  const LaunchOptions o = launch_options(order, seed);
  dfk::SlParams pc = p;  // the kernels take `constant SlParams&`, a plain reference here
  dispatch(L::chunk_grid(p), L::chunk_group(p), o, [&](uint3 gid) {
    dfnet4_spectral_loss_fwd_f32(pred.data(), target.data(), part.ptr(), pc, gamma, gid.x);
  });
  part.check();
  dispatch(L::fold_grid(), L::fold_group(), o, [&](uint3 gid) {
    dfnet4_spectral_loss_fold_f32(part.ptr(), mag.ptr(), cplx.ptr(), pc, gid.x);
  });
  return nb::make_tuple(mag.release(), cplx.release());
}

// Returns (dpred, dtarget); a gradient not asked for is None.
nb::tuple backward(In pred, In target, float dmag, float dcplx, bool want_pred, bool want_target, float gamma,
                   const std::string& order, uint64_t seed) {
  namespace L = dfnet4::sl_launch;
  const int flags = (want_pred ? dfk::kSlGradPred : 0) | (want_target ? dfk::kSlGradTarget : 0);
  const auto p = params(pred, target, flags);
  const size_t n = p.pairs;
  Buffer dpred("dpred", {want_pred ? n : 0, 2}), dtarget("dtarget", {want_target ? n : 0, 2});
  const LaunchOptions o = launch_options(order, seed);
  dfk::SlParams pc = p;
  dispatch(L::chunk_grid(p), L::chunk_group(p), o, [&](uint3 gid) {
    dfnet4_spectral_loss_bwd_f32(pred.data(), target.data(), &dmag, &dcplx, dpred.ptr(), dtarget.ptr(), pc, gamma,
                                 gid.x);
  });
  nb::object none = nb::none();
  return nb::make_tuple(want_pred ? nb::cast(dpred.release()) : none,
                        want_target ? nb::cast(dtarget.release()) : none);
}

void bind(nb::module_& m) {
  auto s = m.def_submodule("spectral_loss",
                           "metal/spectral_loss.metal run on the emulator with eval_gpu's launch plan");
  s.def("forward", &forward, nb::arg("pred"), nb::arg("target"), nb::arg("gamma"), nb::arg("order") = "forward",
        nb::arg("seed") = 0, "pred, target (pairs, 2). Returns (mag, cplx).");
  s.def("backward", &backward, nb::arg("pred"), nb::arg("target"), nb::arg("dmag"), nb::arg("dcplx"),
        nb::arg("want_pred"), nb::arg("want_target"), nb::arg("gamma"), nb::arg("order") = "forward",
        nb::arg("seed") = 0, "Returns (dpred, dtarget), None where not asked for.");
  s.attr("CHUNK") = int(dfk::kSlChunk);
  namespace L = dfnet4::sl_launch;
  s.attr("KERNELS") = nb::make_tuple(L::forward_kernel(), L::fold_kernel(), L::backward_kernel());
}

}  // namespace

DFNET4_REGISTER_BINDING(bind);
