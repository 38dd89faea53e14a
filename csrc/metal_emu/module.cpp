// The emulated-Metal test module: each csrc/metal_emu/*_emu.cpp registers the kernels it runs.
#include "registry.h"

NB_MODULE(_metal_emu, m) {
  m.doc() = "Metal kernels of dfnet4 compiled as C++ against metal/emu and run on the CPU (tests only)";
  for (auto bind : dfnet4::binders()) bind(m);
}
