// Metal kernels of the selective scan: thin wrappers that map GPU thread positions onto the shared
// kernel bodies (csrc/kernels/selective_scan_{fwd,bwd}.h). Launch plan: csrc/selective_scan_launch.h.
// Inputs are float32 (the op casts half/bfloat16 inputs); the GPU has no double.
#include <metal_stdlib>

using namespace metal;

#include "kernels/selective_scan_bwd.h"
#include "kernels/selective_scan_fwd.h"

// One thread per (channel, batch) = (gid.x, gid.y).
template <int MAXN, int NFIX>
[[kernel]] void dfnet4_selective_scan_fwd(
    device const float* u [[buffer(0)]], device const float* delta [[buffer(1)]],
    device const float* A [[buffer(2)]], device const float* B [[buffer(3)]],
    device const float* C [[buffer(4)]], device const float* D [[buffer(5)]],
    device const float* z [[buffer(6)]], device const float* bias [[buffer(7)]],
    device const float* h0 [[buffer(8)]], device float* out [[buffer(9)]],
    device float* last [[buffer(10)]], device float* ckpt [[buffer(11)]],
    constant dfk::ScanParams& params [[buffer(12)]],
    uint2 gid [[thread_position_in_grid]]) {
  const dfk::ScanParams p = params;
  if ((int)gid.x >= p.channels || (int)gid.y >= p.batch) return;
  dfk::scan_forward_channel<float, MAXN, NFIX>(p, (int)gid.y, (int)gid.x, u, delta, A, B, C, D, z,
                                               bias, h0, out, last, ckpt);
}

// One SIMD-group per (channel block, batch), up to 8 per threadgroup: lane = channel within the
// block. Every lane runs, also past the last channel (it then mirrors the last channel and
// contributes zeros), so the simd_sum reductions of dB and dC always see all 32 lanes.
template <int MAXN, int NFIX>
[[kernel]] void dfnet4_selective_scan_bwd(
    device const float* u [[buffer(0)]], device const float* delta [[buffer(1)]],
    device const float* A [[buffer(2)]], device const float* B [[buffer(3)]],
    device const float* C [[buffer(4)]], device const float* D [[buffer(5)]],
    device const float* z [[buffer(6)]], device const float* bias [[buffer(7)]],
    device const float* ckpt [[buffer(8)]], device const float* dout [[buffer(9)]],
    device const float* dlast [[buffer(10)]], device float* du [[buffer(11)]],
    device float* ddelta [[buffer(12)]], device float* dz [[buffer(13)]],
    device float* dA_part [[buffer(14)]], device float* dB_part [[buffer(15)]],
    device float* dC_part [[buffer(16)]], device float* dD_part [[buffer(17)]],
    device float* dbias_part [[buffer(18)]], device float* dh0 [[buffer(19)]],
    device float* sah [[buffer(20)]], device float* sa [[buffer(21)]],
    device float* out [[buffer(22)]], constant dfk::ScanParams& params [[buffer(23)]],
    uint2 gid [[thread_position_in_grid]], uint2 grid [[threads_per_grid]],
    uint simd_lane [[thread_index_in_simdgroup]]) {
  const dfk::ScanParams p = params;
  const bool on = (int)gid.x < p.channels;
  const int d = on ? (int)gid.x : p.channels - 1;
  dfk::ScanGpuLane<MAXN> lane;
  lane.on = on;
  lane.simd_lane = simd_lane;
  lane.thread_id = (long)gid.y * grid.x + gid.x;
  lane.n_threads = (long)grid.x * grid.y;
  dfk::scan_backward_channel<float, MAXN, NFIX>(p, (int)gid.y, d, lane, u, delta, A, B, C, D, z,
                                                bias, ckpt, dout, dlast, du, ddelta, dz, out, dA_part,
                                                dB_part, dC_part, dD_part, dbias_part, dh0, sah, sa);
}

// Folds partial sums: dst[o, j] = sum_k src[o, k, j]; thread (j, o).
[[kernel]] void dfnet4_selective_scan_sum_f32(
    device const float* src [[buffer(0)]], device float* dst [[buffer(1)]],
    constant int& count [[buffer(2)]], constant int& inner [[buffer(3)]],
    uint2 gid [[thread_position_in_grid]]) {
  if ((int)gid.x >= inner) return;
  dfk::scan_sum_partials<float>(src, dst, count, inner, (long)gid.y, (long)gid.x);
}

#define DFNET4_SCAN_INSTANTIATE(MAXN, NFIX, SUFFIX)                                               \
  template [[host_name("dfnet4_selective_scan_fwd_f32_" SUFFIX)]] [[kernel]]                     \
  decltype(dfnet4_selective_scan_fwd<MAXN, NFIX>) dfnet4_selective_scan_fwd<MAXN, NFIX>;         \
  template [[host_name("dfnet4_selective_scan_bwd_f32_" SUFFIX)]] [[kernel]]                     \
  decltype(dfnet4_selective_scan_bwd<MAXN, NFIX>) dfnet4_selective_scan_bwd<MAXN, NFIX>;

// Must match scan_launch::variant().
DFNET4_SCAN_INSTANTIATE(16, 16, "n16x16")
DFNET4_SCAN_INSTANTIATE(16, 0, "n16")
DFNET4_SCAN_INSTANTIATE(64, 0, "n64")
