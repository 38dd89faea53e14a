// eval_gpu of the primitives whose Metal kernels are written (metal/<op>.metal, run by the
// emulated-Metal tests) but whose host code (through metal_host.h) is not yet: a Metal build says
// so. Goes away with the last such primitive.
#pragma once

#include <stdexcept>
#include <string>

namespace dfnet4 {

[[noreturn]] inline void metal_host_pending(const char* op) {
  throw std::runtime_error(std::string(op) +
                           ": its Metal host code is not written yet (the kernels are); run it on the "
                           "CPU: `with mx.stream(mx.cpu): ...` or mx.set_default_device(mx.cpu)");
}

}  // namespace dfnet4
