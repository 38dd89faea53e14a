// Test kernels for the Metal emulator itself (tests/test_metal_emu.py). Written as ordinary Metal:
// only the emulated build compiles them (metal/*.metal, not this folder, goes into the metallib).
#include <metal_stdlib>
using namespace metal;

#include "kernels/defines.h"  // the shared kernel bodies' words: must take the Metal path here
#include "kernels/fast_math.h"

// One step of the tree: a helper that takes threadgroup memory, as the shared kernel bodies do.
inline void tree_step(DF_THREADGROUP float* shared, uint tid, uint s) {
  threadgroup float* mine = shared + tid;
  if (tid < s) *mine += shared[tid + s];
}

// Threadgroup tree reduction of x into out[group]. kVariant 0 is correct; 1 forgets the barrier
// after filling shared memory; 2 forgets the barrier inside the tree loop.
template <int kVariant>
[[kernel]] void emu_tg_reduce(device const float* x [[buffer(0)]], device float* out [[buffer(1)]],
                              constant uint& n [[buffer(2)]],
                              threadgroup float* shared [[threadgroup(0)]],
                              uint gid [[thread_position_in_grid]],
                              uint tid [[thread_index_in_threadgroup]],
                              uint group [[threadgroup_position_in_grid]],
                              uint size [[threads_per_threadgroup]]) {
  shared[tid] = gid < n ? x[gid] : 0.0f;
  if (kVariant != 1) threadgroup_barrier(mem_flags::mem_threadgroup);
  for (uint s = size / 2; s > 0; s >>= 1) {
    tree_step(shared, tid, s);
    if (kVariant != 2) threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  if (tid == 0) out[group] = shared[0];
}
template [[host_name("emu_tg_reduce_ok")]] [[kernel]] decltype(emu_tg_reduce<0>) emu_tg_reduce<0>;

// Every SIMD-group collective on x; result k of thread i goes to out[k * n + i].
constant constexpr uint kSimdOps = 21;
[[kernel]] void emu_simd_ops(device const float* x [[buffer(0)]], device float* out [[buffer(1)]],
                             constant uint& n [[buffer(2)]],
                             uint i [[thread_position_in_grid]],
                             uint lane [[thread_index_in_simdgroup]]) {
  const float v = x[i];
  out[0 * n + i] = simd_sum(v);
  out[1 * n + i] = simd_max(v);
  out[2 * n + i] = simd_min(v);
  out[3 * n + i] = simd_prefix_inclusive_sum(v);
  out[4 * n + i] = simd_prefix_exclusive_sum(v);
  out[5 * n + i] = simd_shuffle(v, ushort((lane * 7 + 3) % 32));
  out[6 * n + i] = simd_shuffle_down(v, ushort(1));
  out[7 * n + i] = simd_shuffle_up(v, ushort(2));
  out[8 * n + i] = simd_shuffle_xor(v, ushort(5));
  out[9 * n + i] = simd_broadcast(v, ushort(3));
  out[10 * n + i] = simd_all(v > -5.0f) ? 1.0f : 0.0f;
  out[11 * n + i] = simd_any(v > 6.0f) ? 1.0f : 0.0f;
  // Divergent lanes: two collectives at different call sites, each over its own lanes only.
  if (lane % 3 == 0) {
    out[12 * n + i] = simd_sum(v);
  } else {
    out[12 * n + i] = simd_prefix_inclusive_sum(v);
  }
  // Vector and half operands.
  const float2 pair = simd_sum(float2(v, 2.0f * v));
  out[13 * n + i] = pair.y - pair.x;
  out[14 * n + i] = float(simd_max(half(v)));
  // Integer operands, rotation, first-lane helpers, a vector shuffle.
  out[15 * n + i] = float(simd_sum(int(v)));
  out[16 * n + i] = float(simd_or(uint(v + 8.0f)));
  out[17 * n + i] = simd_shuffle_rotate_down(v, ushort(3));
  out[18 * n + i] = simd_broadcast_first(v);
  out[19 * n + i] = simd_is_first() ? 1.0f : 0.0f;
  out[20 * n + i] = simd_shuffle_up(float4(v, 0.0f, 0.0f, 1.0f), ushort(1)).x;
}

// simd_broadcast with a lane id that differs between lanes: Metal requires it to be uniform.
[[kernel]] void emu_bad_broadcast(device float* out [[buffer(0)]],
                                  uint lane [[thread_index_in_simdgroup]]) {
  out[lane] = simd_broadcast(float(lane), ushort(lane % 2));
}

// Barrier misuse, kMode 0: barrier only in some threads, the others return;
// 1: if/else with a barrier in each branch (different barriers); 2: barrier in a loop whose trip
// count depends on the thread.
template <int kMode>
[[kernel]] void emu_divergent(device float* out [[buffer(0)]],
                              uint tid [[thread_index_in_threadgroup]]) {
  if (kMode == 0) {
    if (tid < 5) threadgroup_barrier(mem_flags::mem_threadgroup);
  } else if (kMode == 1) {
    if (tid < 5) {
      threadgroup_barrier(mem_flags::mem_threadgroup);
    } else {
      threadgroup_barrier(mem_flags::mem_threadgroup);
    }
  } else {
    for (uint k = 0; k < tid % 3; ++k) threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  out[tid] = 1.0f;
}

// The position attributes of every thread; 17 values per thread at its linear grid index.
constant constexpr uint kPosFields = 17;
[[kernel]] void emu_positions(device uint* out [[buffer(0)]],
                              uint3 gpos [[thread_position_in_grid]],
                              uint3 group [[threadgroup_position_in_grid]],
                              uint3 tpos [[thread_position_in_threadgroup]],
                              uint3 tsize [[threads_per_threadgroup]],
                              uint3 grid [[threads_per_grid]],
                              uint tindex [[thread_index_in_threadgroup]],
                              uint lane [[thread_index_in_simdgroup]],
                              uint simd [[simdgroup_index_in_threadgroup]],
                              uint nsimd [[simdgroups_per_threadgroup]]) {
  device uint* o = out + kPosFields * ((gpos.z * grid.y + gpos.y) * grid.x + gpos.x);
  o[0] = gpos.x; o[1] = gpos.y; o[2] = gpos.z;
  o[3] = group.x; o[4] = group.y; o[5] = group.z;
  o[6] = tpos.x; o[7] = tpos.y; o[8] = tpos.z;
  o[9] = tsize.x; o[10] = tsize.y; o[11] = tsize.z;
  o[12] = tindex; o[13] = lane; o[14] = simd; o[15] = nsimd;
  o[16] += 1;  // visits: the harness zeroes it, each thread must run exactly once
}

// Records the order in which the scheduler runs threads: before and after one barrier.
[[kernel]] void emu_run_order(device uint* out [[buffer(0)]],
                              device atomic_uint* counter [[buffer(1)]],
                              uint tid [[thread_index_in_threadgroup]],
                              uint size [[threads_per_threadgroup]]) {
  out[tid] = atomic_fetch_add_explicit(counter, 1u, memory_order_relaxed);
  threadgroup_barrier(mem_flags::mem_none);
  out[size + tid] = atomic_fetch_add_explicit(counter, 1u, memory_order_relaxed);
}

// Writes one float past the end of its threadgroup buffer (thread size-1 writes shared[size]).
[[kernel]] void emu_overflow(threadgroup float* shared [[threadgroup(0)]],
                             uint tid [[thread_index_in_threadgroup]]) {
  shared[tid + 1] = 1.0f;
}

// metal:: math, one function per row of out; x has n values.
constant constexpr uint kMathOps = 14;
[[kernel]] void emu_math(device const float* x [[buffer(0)]], device float* out [[buffer(1)]],
                         constant uint& n [[buffer(2)]], uint i [[thread_position_in_grid]]) {
  const float v = x[i];
  out[0 * n + i] = exp(v);
  out[1 * n + i] = log(abs(v) + 1.0f);
  out[2 * n + i] = tanh(v);
  out[3 * n + i] = fast::exp2(v);
  out[4 * n + i] = precise::sqrt(abs(v));
  out[5 * n + i] = rsqrt(abs(v) + 1.0f);
  out[6 * n + i] = clamp(v, -1.0f, 1.0f);
  out[7 * n + i] = fma(v, 2.0f, 1.0f);
  out[8 * n + i] = select(v, -v, v < 0.0f);
  out[9 * n + i] = max(v, 0.5f) + min(v, -0.5f);
  const float4 q = float4(v, 1.0f, 2.0f, 3.0f) * 2.0f + float4(1.0f);
  out[10 * n + i] = dot(q, float4(1.0f, 0.0f, 0.0f, 0.0f));
  out[11 * n + i] = float(half(v));
  out[12 * n + i] = dfk::fastmath::softplus(v) + dfk::fastmath::sigmoid(v);
  out[13 * n + i] = max(v, 0.25) + pow(abs(v), 2.0);  // unsuffixed literals, read as float
}

// Thread 0 spin-waits for thread 1's flag. On a GPU this relies on forward progress that Metal
// does not promise; in the emulator (one thread at a time) it never ends: the watchdog must stop it.
[[kernel]] void emu_spin_wait(device atomic_uint* flag [[buffer(0)]],
                              uint tid [[thread_index_in_threadgroup]]) {
  if (tid == 1) atomic_store_explicit(flag, 1u, memory_order_relaxed);
  if (tid == 0)
    while (atomic_load_explicit(flag, memory_order_relaxed) == 0u) {
    }
}

// Writes out[i + offset] for the threads of the grid (offset 0: exactly the buffer; -1 or +1: one
// element outside it; skip: the thread with that index writes nothing).
[[kernel]] void emu_write_range(device float* out [[buffer(0)]], constant int& offset [[buffer(1)]],
                                constant uint& skip [[buffer(2)]],
                                uint i [[thread_position_in_grid]]) {
  if (i != skip) out[int(i) + offset] = float(i);
}
