// Selective scan kernel bodies (mamba-ssm's selective_scan_fn, real A, channels-last), written once
// for the CPU primitive and the Metal kernels (docs/architecture.md). One logical thread owns one
// (batch, channel) pair and keeps its `state` values in a local array; on the GPU they stay in
// registers. The bodies are templated on the value type T that such a thread computes with: on
// Metal T = float (one thread = one channel); the CPU driver also runs them with T = f32x16, a
// vector of 16 floats, so one "thread" is 16 neighbouring channels, one per SIMD lane (kernels/vec.h).
//
//   dt = delta (+ bias[d]), softplus'd if asked;  h_t = exp(dt A) h_{t-1} + dt u B_t
//   y  = sum_n C_t h_t + D u;                     out = y * silu(z)
//
// The forward saves the state entering every chunk of kScanChunk steps (the checkpoints); the
// backward recomputes one chunk's states from its checkpoint into a small scratch and runs the
// adjoint recurrence backwards over it. Nothing of size batch*time*channels*state exists anywhere.
// Sums over channels (dB, dC) go through a Lane policy: the CPU adds into a per-block partial, the
// GPU reduces over the 32 channels of a SIMD-group and lane 0 stores.
//
// This header: what the forward (selective_scan_fwd.h) and the backward (selective_scan_bwd.h)
// share: the loop over states. Parameters and flags: selective_scan_params.h.
#pragma once

#include "kernels/defines.h"
#include "kernels/fast_math.h"
#include "kernels/selective_scan_params.h"
#include "kernels/vec.h"

namespace dfk {

// ---- state loops ----------------------------------------------------------------------------------
// ScanStates<T>::each(N, f) calls f(n) for every state n < N: the recurrences' loops over state, with
// their bodies as functors (MSL has no lambdas). Scalar T: a plain loop, which GCC
// vectorises over the states. CPU vectors of channels: fully unrolled, so that the per-state arrays
// stay in registers instead of memory (6-7 % per loop); the same pragma on the scalar loops would
// make GCC unroll them before vectorising them (3-4x slower).
template <typename T>
struct ScanStates {
  template <typename F>
  static DF_INLINE void each(int N, F f) {
    for (int n = 0; n < N; ++n) f(n);
  }
};

#if DFK_VECTOR_LANES > 1
template <>
struct ScanStates<f32x16> {
  template <typename F>
  static DF_INLINE void each(int N, F f) {
#pragma GCC unroll 16
    for (int n = 0; n < N; ++n) f(n);
  }
};
#endif

// dst[n] = row `row` of a (rows, state) array, n < state: A's row d, or row b * channels + d of h0 or
// dlast. For a vector T of channels, each lane's row is `state` elements further on.
template <typename T, int NFIX>
DF_INLINE void scan_load_row(ScanParams p, long row, const DF_DEVICE Scalar<T>* DF_RESTRICT src,
                             DF_THREAD T* dst) {
  const int N = NFIX > 0 ? NFIX : p.state;
  for (int n = 0; n < N; ++n) dst[n] = Vec<T>::load_strided(src + row * N + n, N);
}

}  // namespace dfk
