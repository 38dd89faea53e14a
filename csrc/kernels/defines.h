// Shared by every kernel body in csrc/kernels/: the few words that differ between C++ and the
// Metal Shading Language. Kernel bodies use only what both accept (DESIGN.md decision 1): no std::,
// no exceptions, no recursion, no allocation, no double unless templated for the CPU only.
//
// __METAL_VERSION__ is defined by the real Metal compiler and by the emulation header
// (metal/emu/metal_stdlib), so the emulated build takes exactly the Metal path below.
#pragma once

#if defined(__METAL_VERSION__)
#include <metal_stdlib>
#define DF_DEVICE device
#define DF_CONSTANT constant
#define DF_THREADGROUP threadgroup
#define DF_THREAD thread
#define DF_INLINE inline
#define DF_MATH metal
#else
#include <cmath>
#define DF_DEVICE
#define DF_CONSTANT
#define DF_THREADGROUP
#define DF_THREAD
#define DF_INLINE inline
#define DF_MATH std
#endif

namespace dfk {

template <typename T>
DF_INLINE T exp_(T x) { return DF_MATH::exp(x); }
template <typename T>
DF_INLINE T log_(T x) { return DF_MATH::log(x); }
template <typename T>
DF_INLINE T tanh_(T x) { return DF_MATH::tanh(x); }
template <typename T>
DF_INLINE T abs_(T x) { return DF_MATH::abs(x); }
template <typename T>
DF_INLINE T max_(T a, T b) { return a > b ? a : b; }
template <typename T>
DF_INLINE T min_(T a, T b) { return a < b ? a : b; }

template <typename T>
DF_INLINE T sigmoid_(T x) { return T(1) / (T(1) + exp_(-x)); }

// log(1 + exp(x)) without overflow; identical formula on CPU and GPU (MSL lacks log1p on some versions).
template <typename T>
DF_INLINE T softplus_(T x) {
  return x > T(20) ? x : log_(T(1) + exp_(x));
}

}  // namespace dfk
