// Gate nonlinearities (sigmoid, tanh) shared by the kernel bodies that apply them elementwise over
// a block of channels: the GRU cell and the causal conv's SiLU.
#pragma once
#include "defines.h"

// The bodies must inline into the CPU's ISA-specific workers to vectorise.
#if defined(__METAL_VERSION__)
#define DFK_GATE_INLINE inline
#else
#define DFK_GATE_INLINE inline __attribute__((always_inline))
#endif

namespace dfk {

// Gate nonlinearities. Metal and CPU double: the math library. CPU float: tanh through one exp,
// and an exp without branches or libm calls, so the CPU kernel's loop over a block of hidden
// units vectorises (a scalar libm call per gate was a third of the forward's time).
template <typename T>
DFK_GATE_INLINE T gate_sigmoid(T x) { return sigmoid_(x); }
template <typename T>
DFK_GATE_INLINE T gate_tanh(T x) { return tanh_(x); }

#if !defined(__METAL_VERSION__)
// exp(x) for float: x = n ln2 + r, |r| <= ln2/2, exp(r) by a degree-6 Taylor polynomial (relative
// error < 2e-7 on that interval), times 2^n built in the exponent bits. x is clamped to
// [-87, 88] (the normal range), which saturates sigmoid/tanh exactly where float does anyway.
DFK_GATE_INLINE float gate_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to the nearest integer
  float t = x * 1.44269504f + shifter;
  float n = t - shifter;
  float r = x - n * 0.693145752f;  // ln2 split in two for an exact n*ln2_hi
  r = r - n * 1.42860677e-6f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int ni;
  __builtin_memcpy(&ni, &t, sizeof(ni));
  ni -= 0x4B400000;  // the bits of `shifter`: leaves the integer n
  int bits = (ni + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}
template <>
DFK_GATE_INLINE float gate_sigmoid<float>(float x) { return 1.0f / (1.0f + gate_exp(-x)); }
// 1 - 2/(e^{2x}+1): absolute error ~1e-7 (relative error grows only where tanh(x) ~ 0).
template <>
DFK_GATE_INLINE float gate_tanh<float>(float x) { return 1.0f - 2.0f / (gate_exp(2.0f * x) + 1.0f); }
#endif

}  // namespace dfk
