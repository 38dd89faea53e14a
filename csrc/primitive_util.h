// Helpers every primitive's op builder and CPU eval needs: argument errors that name the op and
// the argument, the dtype rule, the input list, raw data pointers, output and partial-sum
// allocation, and the contiguity contract of our kernels.
#pragma once

#include <cmath>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/array.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "mlx/primitives.h"

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

// An op builder's argument errors, prefixed with the op's name (e.g. "selective_scan").
struct ArgumentCheck {
  const char* op;
  [[noreturn]] void bad(const std::string& msg) const { bad_argument(op, msg); }
  void shape(const char* name, const mx::array& a, const mx::Shape& want, const char* what) const {
    expect_shape(op, name, a, want, what);
  }
};

// The fused kernels compute in float32, or in float64 on the CPU (Metal has no double); the Python
// ops cast half types to float32 before they get here.
inline void check_compute_dtype(const char* op, mx::Dtype dtype, const mx::Stream& s) {
  if (dtype != mx::float32 && dtype != mx::float64) {
    bad_argument(op, std::string("the fused kernels take float32 (or float64 on the CPU); dfnet4.ops.") + op +
                         " casts");
  }
  if (dtype == mx::float64 && s.device.type != mx::Device::cpu) {
    bad_argument(op, "float64 is only supported on the CPU stream (Metal has no double); use float32 or "
                     "run on mx.cpu");
  }
}

// An op builder's inputs for its primitive: each of the op's dtype (named in the error otherwise)
// and made row-contiguous, the layout the kernels index.
class InputList {
 public:
  InputList(const char* op, const char* first, mx::Dtype dtype, mx::Stream s)
      : op_(op), first_(first), dtype_(dtype), s_(s) {}
  void add(const char* name, const mx::array& a) {
    if (a.dtype() != dtype_) bad_argument(op_, std::string(name) + " must have the same dtype as " + first_);
    arrays_.push_back(mx::contiguous(a, false, s_));
  }
  const std::vector<mx::array>& arrays() const { return arrays_; }

 private:
  const char *op_, *first_;
  mx::Dtype dtype_;
  mx::Stream s_;
  std::vector<mx::array> arrays_;
};

// The arguments the normalisations (batch norm, RMSNorm) share, checked: x (..., channels) with at
// least `min_rank` axes, at least one channel and at most 2^31 - 1 `rows` (what its other axes
// are called in the message), weight (channels,), eps finite and > 0, one compute dtype. Returns
// the op's InputList holding x and weight.
inline InputList channels_last_norm_inputs(const ArgumentCheck& check, const mx::array& x, const mx::array& weight,
                                           double eps, int min_rank, const char* rows, const mx::Stream& s) {
  if (x.ndim() < min_rank) {
    check.bad("x must have shape (..., channels) with at least " + std::to_string(min_rank) +
              (min_rank == 1 ? " dimension" : " dimensions") + ", got " + shape_str(x));
  }
  const int c = x.shape(-1);
  if (c < 1) check.bad("x must have at least one channel, got " + shape_str(x));
  if (x.size() / c > 0x7fffffffL) check.bad(std::string("x has more than 2^31 - 1 ") + rows);
  check.shape("weight", weight, {c}, "(channels,)");
  if (!(eps > 0) || !std::isfinite(eps)) check.bad("eps must be a finite number > 0, got " + std::to_string(eps));
  check_compute_dtype(check.op, x.dtype(), s);
  InputList in(check.op, "x", x.dtype(), s);
  in.add("x", x);
  in.add("weight", weight);
  return in;
}

// The outputs of `prim` applied to `inputs`, all of `dtype`, shaped by its output_shapes (which
// mx.compile(shapeless=True) calls again on new shapes).
inline std::vector<mx::array> apply(std::shared_ptr<mx::Primitive> prim, std::vector<mx::array> inputs,
                                    mx::Dtype dtype) {
  auto shapes = prim->output_shapes(inputs);
  std::vector<mx::Dtype> dtypes(shapes.size(), dtype);
  return mx::array::make_arrays(std::move(shapes), std::move(dtypes), std::move(prim), std::move(inputs));
}

// A cotangent as a backward primitive reads it: the primal's dtype, row-contiguous (MLX passes
// broadcast zeros for unused outputs).
inline mx::array cotangent(const mx::array& c, mx::Dtype dtype, const mx::Stream& s) {
  return mx::contiguous(mx::astype(c, dtype, s), false, s);
}

// Under shapeless compilation a graph is replayed with new input shapes without re-running the op
// builder; refuse (rather than read out of bounds) if the inputs' sizes no longer agree.
inline void check_sizes(const char* prim, const std::vector<mx::array>& in, const std::vector<size_t>& want) {
  for (size_t i = 0; i < want.size(); ++i) {
    if (in[i].size() != want[i]) {
      throw std::runtime_error(std::string(prim) +
                               ": input sizes no longer agree (a shapeless-compiled graph replayed "
                               "with shapes that do not fit together?); recompile for the new shapes");
    }
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

// Allocated work arrays of these shapes (a backward's partial sums): the CPU eval hands them to the
// encoder as temporaries, the Metal eval binds them as device buffers.
inline std::vector<mx::array> work_arrays(const std::vector<mx::Shape>& shapes, mx::Dtype dtype) {
  std::vector<mx::array> arrays;
  for (const auto& shape : shapes) {
    arrays.emplace_back(shape, dtype, nullptr, std::vector<mx::array>{});
    alloc(arrays.back());
  }
  return arrays;
}

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
