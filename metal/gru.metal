// Metal wrappers of the GRU recurrence kernel bodies (csrc/kernels/gru_{fwd,bwd}.h). Launch plan
// and buffer indices: csrc/gru_launch.h. Forward: one SIMD group per (hidden unit, chunk of batch rows):
// lanes split each dot product, simd_sum reduces it, lane 0 applies the gate math; SIMD groups
// past the last hidden unit compute on unit 0 and write nothing, so every lane reaches the
// collectives. Backward: one thread per (batch row, hidden unit), no collectives.
#include <metal_stdlib>

#include "kernels/gru_bwd.h"
#include "kernels/gru_fwd.h"

using namespace metal;

template <typename T>
[[kernel]] void gru_forward_step(
    device const T* gx [[buffer(0)]],
    device const T* Wh [[buffer(1)]],
    device const T* bhn [[buffer(2)]],
    device const T* h0 [[buffer(3)]],
    device T* hs [[buffer(4)]],
    device T* gates [[buffer(5)]],
    constant dfk::GruStepParams& p [[buffer(6)]],
    uint3 group [[threadgroup_position_in_grid]],
    uint lane [[thread_index_in_simdgroup]],
    uint sg [[simdgroup_index_in_threadgroup]],
    uint simds [[simdgroups_per_threadgroup]],
    uint lanes [[threads_per_simdgroup]]) {
  const int j_raw = (int)(group.x * simds + sg);
  const bool active = j_raw < p.H;
  const int j = active ? j_raw : 0;
  const int b0 = (int)group.y * dfk::kGruBatchPerSimd;
  const int b1 = b0 + dfk::kGruBatchPerSimd < p.B ? b0 + dfk::kGruBatchPerSimd : p.B;
  for (int b = b0; b < b1; ++b) {  // same trip count for every lane of the SIMD group
    device const T* h_prev =
        p.t == 0 ? h0 + (long)b * p.H : hs + ((long)b * p.T + p.t - 1) * p.H;
    T pr, pz, pn;
    dfk::gru_forward_partials<T>(h_prev, Wh, p.H, j, (int)lane, (int)lanes, pr, pz, pn);
    pr = simd_sum(pr);
    pz = simd_sum(pz);
    pn = simd_sum(pn);
    if (active && lane == 0)
      dfk::gru_forward_finish<T>(gx, bhn, h_prev, hs, gates, p.T, p.H, b, p.t, j, pr, pz, pn);
  }
}

template <typename T>
[[kernel]] void gru_backward_step(
    device const T* dhs [[buffer(0)]],
    device const T* gates [[buffer(1)]],
    device const T* hs [[buffer(2)]],
    device const T* h0 [[buffer(3)]],
    device const T* Wh [[buffer(4)]],
    device T* dgx [[buffer(5)]],
    device T* dgh [[buffer(6)]],
    device T* dh_direct [[buffer(7)]],
    constant dfk::GruStepParams& p [[buffer(8)]],
    uint3 gid [[thread_position_in_grid]]) {
  const int j = (int)gid.x, b = (int)gid.y;
  if (j >= p.H) return;
  const bool last = p.t == p.T - 1;
  const T wh_sum = last ? T(0)
                        : dfk::gru_backward_wh_sum<T>(dgh + ((long)b * p.T + p.t + 1) * 3 * p.H,
                                                      Wh, p.H, j);
  dfk::gru_backward_finish<T>(dhs, gates, hs, h0, dgx, dgh, dh_direct, p.T, p.H, b, p.t, j, last,
                              wh_sum);
}

template <typename T>
[[kernel]] void gru_backward_dh0(
    device const T* dgh [[buffer(0)]],
    device const T* Wh [[buffer(1)]],
    device const T* dh_direct [[buffer(2)]],
    device T* dh0 [[buffer(3)]],
    constant dfk::GruStepParams& p [[buffer(4)]],
    uint3 gid [[thread_position_in_grid]]) {
  const int j = (int)gid.x, b = (int)gid.y;
  if (j >= p.H) return;
  const T wh_sum = dfk::gru_backward_wh_sum<T>(dgh + (long)b * p.T * 3 * p.H, Wh, p.H, j);
  dfk::gru_backward_dh0_finish<T>(dh_direct, dh0, p.H, b, j, wh_sum);
}

#define DFNET4_GRU_INSTANTIATE(name, T, suffix) \
  template [[host_name(#name "_" #suffix)]] [[kernel]] decltype(name<T>) name<T>;

DFNET4_GRU_INSTANTIATE(gru_forward_step, float, float32)
DFNET4_GRU_INSTANTIATE(gru_backward_step, float, float32)
DFNET4_GRU_INSTANTIATE(gru_backward_dh0, float, float32)
