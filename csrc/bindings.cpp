#include "registry.h"

namespace nb = nanobind;

static void bind_build_info(nb::module_& m) {
  m.def("build_info", []() {
    nb::dict d;
#ifdef _METAL_
    d["metal"] = true;
#else
    d["metal"] = false;
#endif
    d["cpu"] = true;
#ifdef DFNET4_WITH_METAL_EMU
    d["metal_emu"] = true;  // dfnet4._metal_emu was built beside it (test tooling)
#else
    d["metal_emu"] = false;
#endif
    return d;
  }, "Which backends this build of the extension supports, and whether the emulated-Metal test module "
     "was built with it.");
}
DFNET4_REGISTER_BINDING(bind_build_info);

NB_MODULE(_ext, m) {
  m.doc() = "dfnet4 fused kernels (MLX custom primitives)";
  for (auto bind : dfnet4::binders()) bind(m);
}
