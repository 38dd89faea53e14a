// Helpers every primitive's op builder and CPU eval needs: argument errors that name the op and
// the argument, raw data pointers, output allocation, and the contiguity contract of our kernels.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/array.h"
#include "mlx/backend/cpu/encoder.h"

namespace dfnet4::util {

namespace mx = mlx::core;

inline std::string shape_str(const mx::array& a) {
  std::ostringstream os;
  os << "(";
  for (int i = 0; i < static_cast<int>(a.ndim()); ++i) os << (i ? ", " : "") << a.shape(i);
  os << (a.ndim() == 1 ? ",)" : ")");
  return os.str();
}

// ValueError in Python (nanobind maps std::invalid_argument), prefixed with the op's name.
[[noreturn]] inline void bad_argument(const char* op, const std::string& msg) {
  throw std::invalid_argument(std::string(op) + ": " + msg);
}

inline void expect_shape(const char* op, const char* name, const mx::array& a, const mx::Shape& want,
                         const char* what) {
  if (a.shape() != want) {
    std::ostringstream os;
    os << name << " must have shape " << what << " = (";
    for (size_t i = 0; i < want.size(); ++i) os << (i ? ", " : "") << want[i];
    os << (want.size() == 1 ? ",)" : ")") << ", got " << shape_str(a);
    bad_argument(op, os.str());
  }
}

template <typename T>
const T* ptr(const mx::array& a) { return a.data<T>(); }

// Optional inputs are addressed by index; -1 means "not given".
template <typename T>
const T* opt_ptr(const std::vector<mx::array>& in, int idx) {
  return idx >= 0 ? in[idx].data<T>() : nullptr;
}

inline void alloc(mx::array& a) { a.set_data(mx::allocator::malloc(a.nbytes())); }

// The op builders make every input row-contiguous; the kernels index them densely.
inline void check_contiguous(const std::vector<mx::array>& inputs, const char* prim) {
  for (const auto& a : inputs) {
    if (!a.flags().row_contiguous) {
      throw std::runtime_error(std::string(prim) + ": inputs must be row-contiguous (the op makes them so)");
    }
  }
}

// The start of every CPU eval: inputs checked row-contiguous, outputs allocated, both registered
// with the stream's encoder, which is returned for the caller's dispatch.
inline mx::cpu::CommandEncoder& begin_cpu_eval(const char* prim, const mx::Stream& stream,
                                               const std::vector<mx::array>& inputs,
                                               std::vector<mx::array>& outputs) {
  check_contiguous(inputs, prim);
  for (auto& o : outputs) alloc(o);
  auto& enc = mx::cpu::get_command_encoder(stream);
  for (const auto& a : inputs) enc.set_input_array(a);
  for (auto& o : outputs) enc.set_output_array(o);
  return enc;
}

// The CPU kernels' two instantiations: launch(double{}) or launch(float{}) by `a`'s dtype.
template <class Launch>
void for_float_dtype(const mx::array& a, const char* prim, Launch&& launch) {
  if (a.dtype() == mx::float64) {
    launch(double{});
  } else if (a.dtype() == mx::float32) {
    launch(float{});
  } else {
    throw std::runtime_error(std::string(prim) + ": inputs must be float32 or float64");
  }
}

}  // namespace dfnet4::util
