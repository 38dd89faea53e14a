// The Metal launch plan of the GRU recurrence: which kernel, grid and threadgroup size, and the
// order of the per-step dispatches. Shared by eval_gpu (gru_metal.cpp) and the emulated harness
// (metal_emu/gru_emu.cpp), so the tests run exactly the plan the GPU runs.
//
// Forward: one 32-lane SIMD group per (hidden unit j, chunk of kGruBatchPerSimd batch rows);
// lanes split the dot products over k (contiguous rows of Wh) and reuse the rows across the chunk.
// Backward: one thread per (batch row b, hidden unit j), summing over the 3H gate gradients, so
// neighbouring threads read neighbouring columns of Wh. Steps depend on each other, so every step
// is its own dispatch; MLX inserts a memory barrier between them because each reads an array the
// previous one wrote.
#pragma once
#include <string>

#include "kernels/gru_params.h"  // not the bodies: the emulated harness reads this first
#include "launch_plan.h"

namespace dfnet4::gru_launch {

using launch::Size3;

constexpr unsigned kSimdWidth = 32;
constexpr unsigned kSimdsPerGroup = 4;

struct Dispatch {
  std::string name;  // host name in metal/gru.metal, without the dtype suffix
  dfk::GruStepParams params;
  Size3 groups;   // threadgroups per grid
  Size3 threads;  // threads per threadgroup
};

inline Size3 forward_threads() { return {kSimdWidth * kSimdsPerGroup, 1, 1}; }
inline Size3 forward_groups(int B, int H) {
  return {(unsigned long)((H + kSimdsPerGroup - 1) / kSimdsPerGroup),
          (unsigned long)((B + dfk::kGruBatchPerSimd - 1) / dfk::kGruBatchPerSimd), 1};
}
inline Size3 backward_threads() { return {(unsigned long)dfk::kGruBackwardThreads, 1, 1}; }
inline Size3 backward_groups(int B, int H) {
  return {(unsigned long)((H + dfk::kGruBackwardThreads - 1) / dfk::kGruBackwardThreads), (unsigned long)B, 1};
}

// Buffers of gru_forward_step: 0 gx, 1 Wh, 2 bhn, 3 h0, 4 hs (out), 5 gates (out), 6 params.
template <typename F>
void forward(int B, int T, int H, F&& dispatch) {
  for (int t = 0; t < T; ++t)
    dispatch(Dispatch{"gru_forward_step", {B, T, H, t}, forward_groups(B, H), forward_threads()});
}

// Buffers of gru_backward_step: 0 dhs, 1 gates, 2 hs, 3 h0, 4 Wh, 5 dgx (out), 6 dgh (out),
// 7 dh_direct (scratch, B*H), 8 params. gru_backward_dh0: 0 dgh, 1 Wh, 2 dh_direct, 3 dh0 (out),
// 4 params.
template <typename F>
void backward(int B, int T, int H, F&& dispatch) {
  for (int t = T - 1; t >= 0; --t)
    dispatch(Dispatch{"gru_backward_step", {B, T, H, t}, backward_groups(B, H), backward_threads()});
  dispatch(Dispatch{"gru_backward_dh0", {B, T, H, 0}, backward_groups(B, H), backward_threads()});
}

}  // namespace dfnet4::gru_launch
