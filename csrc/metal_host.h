// The host side every primitive's eval_gpu shares (docs/macos.md, "How a new op gets its Metal
// kernel"): the Metal device with a clear error when there is none, kernels compiled at first use
// from the embedded source (metal_kernel_sources.h) with the Metal compiler's message on failure,
// the input contract of our kernels, output and scratch allocation, launch sizes. Metal builds
// only; elsewhere eval_gpu is FlaggedPrimitive's (fused_primitive.h), a clear error.
#pragma once

#ifdef _METAL_

#include <stdexcept>
#include <string>
#include <vector>

#include "fused_primitive.h"
#include "metal_kernel_sources.h"
#include "mlx/allocator.h"
#include "mlx/array.h"
#include "mlx/backend/metal/device.h"
#include "mlx/backend/metal/metal.h"

namespace dfnet4::metal_host {

namespace mx = mlx::core;

inline const char* kReportHint =
    "If this is a Mac with Apple silicon, please run `python -m dfnet4.selfcheck` and send its "
    "whole output (see docs/macos.md, 'Reporting a failure').";

inline std::string device_name(const mx::Device& d) {
  return std::string(d.type == mx::Device::gpu ? "gpu" : "cpu") + ":" + std::to_string(d.index);
}

// The Metal device behind the primitive's stream. Without one (a macOS VM without a GPU, say)
// MLX would fail deep inside; say which device was asked for and how to run on the CPU instead.
inline mx::metal::Device& device(const mx::Stream& s, const char* op) {
  if (!mx::metal::is_available()) {
    throw std::runtime_error(std::string(op) + ": the stream's device " + device_name(s.device) +
                             " needs Metal, and MLX finds no Metal GPU on this machine; run on "
                             "the CPU instead: `with mx.stream(mx.cpu): ...` or "
                             "mx.set_default_device(mx.cpu)");
  }
  return mx::metal::device(s.device);
}

// The compute pipeline of kernel `name` of the op's library (metal/<library>.metal). MLX compiles
// the library from its embedded source the first time any of its kernels is asked for and keeps it
// for the process ("dfnet4_<library>" in the device's library cache).
inline MTL::ComputePipelineState* kernel(mx::metal::Device& d, const OpNames& names,
                                         const std::string& name) {
  const char* op = names.op;
  const std::string library = names.library;
  MTL::Library* lib = nullptr;
  try {
    lib = d.get_library("dfnet4_" + library, [&library]() {
      const char* text = metal_kernels::find(library);
      if (text == nullptr) throw std::logic_error("no embedded source for library '" + library + "'");
      return std::string(text);
    });
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(op) + ": the Metal kernel '" + name + "' could not be " +
                             "built: compiling library 'dfnet4_" + library + "' (metal/" + library +
                             ".metal, embedded source) failed. The Metal compiler said:\n" +
                             e.what() + "\n" + kReportHint);
  }
  try {
    return d.get_kernel(name, lib);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(op) + ": the Metal kernel '" + name + "' of library " +
                             "'dfnet4_" + library + "' could not be loaded:\n" + e.what() + "\n" +
                             kReportHint);
  }
}

// What a primitive's Metal kernels read: float32, or also complex64 read as float (re, im) pairs.
enum InputDtypes { kFloat32Only, kFloatPairs };

// Our kernels read float32, row-contiguous buffers; the op builders guarantee both, this catches a
// primitive built some other way before a kernel reads garbage.
inline void check_inputs(const std::vector<mx::array>& inputs, const char* prim, InputDtypes dtypes = kFloat32Only) {
  for (const auto& a : inputs) {
    const bool pairs = dtypes == kFloatPairs && a.dtype() == mx::complex64;
    if (a.dtype() != mx::float32 && !pairs)
      throw std::invalid_argument(std::string(prim) + (dtypes == kFloatPairs
                                                           ? ": the Metal kernels take float32 or complex64 only"
                                                           : ": the Metal kernels take float32 only"));
    if (!a.flags().row_contiguous)
      throw std::invalid_argument(std::string(prim) + ": inputs must be row-contiguous");
  }
}

inline void allocate(std::vector<mx::array>& outputs) {
  for (auto& o : outputs) o.set_data(mx::allocator::malloc(o.nbytes()));
}

// What every eval_gpu starts with: its inputs checked against our kernels' contract, the device
// (for the kernels, compiled at first use), its outputs allocated.
inline mx::metal::Device& begin_gpu_eval(const mx::Stream& s, const char* op, const char* prim,
                                         const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs,
                                         InputDtypes dtypes = kFloat32Only) {
  check_inputs(inputs, prim, dtypes);
  auto& d = device(s, op);
  allocate(outputs);
  return d;
}

// A float32 work buffer that lives until the command buffer completes.
inline mx::array scratch(mx::Shape shape, mx::metal::CommandEncoder& enc) {
  mx::array a(std::move(shape), mx::float32, nullptr, {});
  a.set_data(mx::allocator::malloc(a.nbytes()));
  enc.add_temporary(a);
  return a;
}

// A launch plan's size (any struct with x, y, z) as Metal's.
template <typename Size3>
MTL::Size size(const Size3& s) {
  return MTL::Size(s.x, s.y, s.z);
}

}  // namespace dfnet4::metal_host

#endif  // _METAL_
