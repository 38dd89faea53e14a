// CPU GRU recurrence. Per step every hidden unit needs the full previous state, so each step is
// split into tasks (blocks of hidden units) that a team of threads claims in order; a step starts
// when the previous one is complete (StepTasks, gru_team.h).
// The hidden-to-hidden products run as a register-blocked micro-kernel over a packed copy of Wh
// whose inner loop is a contiguous axpy (vectorises without reassociating a reduction); the gate
// math is the shared body from kernels/gru_{fwd,bwd}.h. The workers are compiled per instruction set
// (cpu_isa.h), with register tiles sized for each.
// No code here reads floating-point exception flags; without this GCC may not turn the clamps of
// dfk::fastmath::exp into selects (a compare "might trap"), and the gate loop would not vectorise.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "gru_cpu.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "cpu_isa.h"
#include "gru_team.h"
#include "kernels/gru_bwd.h"
#include "kernels/gru_fwd.h"
#include "parallel.h"

namespace dfnet4 {
namespace {

using isa::Isa;

constexpr int kUnits = 16;        // forward: hidden units per block (3 gates -> 48 columns)
constexpr int kCols = 3 * kUnits;  // columns of one micro-kernel block, forward and backward

// acc[bb][c] = sum_k a[bb*lda + k] * W[k*ldw + c], for BB rows of a and kCols columns of W.
// Written with explicit VB-byte vectors (GCC/Clang vector extension) so the BB x kCols
// accumulators stay in registers: each k is kCols/L vector loads of W and BB broadcasts.
template <typename T, int BB, int VB>
DF_INLINE void block_product(const T* a, long lda, int K, const T* W, long ldw,
                                        T (&out)[BB][kCols]) {
  typedef T V __attribute__((vector_size(VB)));
  constexpr int L = VB / (int)sizeof(T), NV = kCols / L;
  static_assert(kCols % L == 0, "block width must be a multiple of the vector length");
  V acc[BB][NV];
#pragma GCC unroll 16
  for (int bb = 0; bb < BB; ++bb)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[bb][v] = V{};
  for (int k = 0; k < K; ++k) {
    const T* w = W + (long)k * ldw;
    V wv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) __builtin_memcpy(&wv[v], w + v * L, sizeof(V));
#pragma GCC unroll 16
    for (int bb = 0; bb < BB; ++bb) {
      const T av = a[bb * lda + k];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[bb][v] += av * wv[v];
    }
  }
  for (int bb = 0; bb < BB; ++bb) __builtin_memcpy(&out[bb][0], &acc[bb][0], sizeof(acc[bb]));
}

// The packed weights of the calling thread's last call, reused: a fresh allocation per call costs
// page faults and zeroing that, for single-frame (streaming) calls, exceed the recurrence itself.
// Only the calling thread (MLX's eval thread) writes it; the team reads it until run_team returns.
template <typename T>
T* pack_buffer(size_t n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

template <typename T>
struct ForwardCtx {
  GruDims d;
  const T *gx, *bhn, *h0, *Wp;  // Wp: packed Wh^T, (H, blocks*kCols)
  long ldw;
  int blocks;
  T *hs, *gates;
};

// Packs Wh (3H,H) into (H, blocks*48): block u holds the r, z, n rows of units 16u..16u+15, so
// one micro-kernel block yields all three sums of 16 units. Padding columns are zero.
// The transpose runs per 16-unit group, k outermost: each k writes 16 contiguous values and the
// group's 16 source rows stay in cache. Writing one source row at a time instead scatters every
// value to another cache line, 7x slower, which dominated single-frame (streaming) calls at H=256.
template <typename T>
const T* pack_forward(const T* Wh, int H, int blocks) {
  long ldw = (long)blocks * kCols;
  T* Wp = pack_buffer<T>((size_t)H * ldw);
  if (H % kUnits) std::fill(Wp, Wp + (size_t)H * ldw, T(0));  // the last block's padding columns
  for (int g = 0; g < 3; ++g)
    for (int j0 = 0; j0 < H; j0 += kUnits) {
      const int nj = std::min(kUnits, H - j0);
      const T* rows = Wh + (long)(g * H + j0) * H;
      T* cols = Wp + (long)(j0 / kUnits) * kCols + g * kUnits;
      for (int k = 0; k < H; ++k)
        for (int u = 0; u < nj; ++u) cols[k * ldw + u] = rows[(long)u * H + k];
    }
  return Wp;
}

// Copies the nj <= kUnits units of a block; full blocks take the fixed-size path (a few vector
// moves) instead of a variable-length memcpy call, which showed up in profiles.
template <typename T>
DF_INLINE void copy_units(T* __restrict dst, const T* __restrict src, int nj) {
  if (nj == kUnits) {
    for (int u = 0; u < kUnits; ++u) dst[u] = src[u];
  } else {
    for (int u = 0; u < nj; ++u) dst[u] = src[u];
  }
}

// Register tiles per instruction set: BB batch rows of VB-byte vectors.
template <Isa isa>
struct Tile {
  static constexpr int BB = isa == Isa::Avx512 ? 4 : isa == Isa::Avx2 ? 2 : 1;
  static constexpr int VB = isa == Isa::Avx512 ? 64 : isa == Isa::Avx2 ? 32 : 16;
};

// The shared cell body over one block of units, on local arrays. Run out of line (one copy per
// instruction set, isa::call): inlined into the big worker loop GCC no longer vectorises it.
template <typename T>
struct GateBlock {
  template <Isa>
  static DF_INLINE void run(const T* __restrict gr, const T* __restrict gz, const T* __restrict gn,
                            const T* __restrict sr, const T* __restrict sz, const T* __restrict hn,
                            const T* __restrict hv, T* __restrict r, T* __restrict z, T* __restrict n,
                            T* __restrict h) {
    for (int u = 0; u < kUnits; ++u) {
      dfk::GruCellOut<T> o = dfk::gru_cell_forward<T>(gr[u], gz[u], gn[u], sr[u], sz[u], hn[u], hv[u]);
      r[u] = o.r;
      z[u] = o.z;
      n[u] = o.n;
      h[u] = o.h;
    }
  }
};

template <typename T, int BB, Isa isa>
DF_INLINE void forward_tile(const ForwardCtx<T>& c, int t, int blk, int b0) {
  constexpr int VB = Tile<isa>::VB;
  const int H = c.d.H, TT = c.d.T;
  const T* h_prev = t == 0 ? c.h0 + (long)b0 * H : c.hs + ((long)b0 * TT + t - 1) * H;
  const long lda = t == 0 ? H : (long)TT * H;
  T acc[BB][kCols];
  block_product<T, BB, VB>(h_prev, lda, H, c.Wp + (long)blk * kCols, c.ldw, acc);
  // Gate math on local copies of the block (no aliasing), so the loop over units vectorises.
  const int j0 = blk * kUnits, nj = std::min(kUnits, H - j0);
  for (int bb = 0; bb < BB; ++bb) {
    const long row = (long)(b0 + bb) * TT + t;
    const T* g = c.gx + row * 3 * H + j0;
    const T* hp = h_prev + bb * lda + j0;
    T gr[kUnits] = {}, gz[kUnits] = {}, gn[kUnits] = {}, bh[kUnits] = {}, hv[kUnits] = {};
    copy_units(gr, g, nj);
    copy_units(gz, g + H, nj);
    copy_units(gn, g + 2 * H, nj);
    copy_units(bh, c.bhn + j0, nj);
    copy_units(hv, hp, nj);
    T sr[kUnits], sz[kUnits], hn[kUnits];
    for (int u = 0; u < kUnits; ++u) {
      sr[u] = acc[bb][u];
      sz[u] = acc[bb][kUnits + u];
      hn[u] = acc[bb][2 * kUnits + u] + bh[u];
    }
    T r[kUnits], z[kUnits], n[kUnits], h[kUnits];
    isa::call<isa, GateBlock<T>>(gr, gz, gn, sr, sz, hn, hv, r, z, n, h);
    T* s = c.gates + row * 4 * H + j0;  // layout of dfk::gru_forward_finish: r, z, n, hn
    copy_units(c.hs + row * H + j0, h, nj);
    copy_units(s, r, nj);
    copy_units(s + H, z, nj);
    copy_units(s + 2 * H, n, nj);
    copy_units(s + 3 * H, hn, nj);
  }
}

// One thread of the team: claims (step, block) tasks until none are left, BB batch rows at a time.
template <typename T>
struct ForwardWorker {
  template <Isa isa>
  static DF_INLINE void run(const ForwardCtx<T>& c, StepTasks& tasks) {
    constexpr int BB = Tile<isa>::BB;
    for (long k = tasks.claim(); k >= 0; k = tasks.claim()) {
      const int t = (int)(k / tasks.per_step()), blk = (int)(k % tasks.per_step());
      tasks.wait_for_step(t);
      int b = 0;
      for (; b + BB <= c.d.B; b += BB) forward_tile<T, BB, isa>(c, t, blk, b);
      for (; b < c.d.B; ++b) forward_tile<T, 1, isa>(c, t, blk, b);
      tasks.finish();
    }
  }
};

template <typename T>
struct BackwardCtx {
  GruDims d;
  const T *dhs, *gates, *hs, *h0, *Wp;  // Wp: Wh (3H,H) with columns padded to blocks*48
  long ldw;
  int blocks;
  T *dgx, *dgh, *dh0, *dh_direct;
};

template <typename T>
const T* pack_backward(const T* Wh, int H, int blocks) {
  long ldw = (long)blocks * kCols;
  T* Wp = pack_buffer<T>((size_t)3 * H * ldw);
  for (long c = 0; c < 3L * H; ++c) {
    std::copy(Wh + c * H, Wh + (c + 1) * H, Wp + c * ldw);
    std::fill(Wp + c * ldw + H, Wp + (c + 1) * ldw, T(0));  // padding columns
  }
  return Wp;
}

// Reverse step t (or, with t == -1, the final dh0) for hidden units blk*48.. and BB batch rows.
template <typename T, int BB, int VB>
DF_INLINE void backward_tile(const BackwardCtx<T>& c, int t, int blk, int b0) {
  const int H = c.d.H, TT = c.d.T;
  const bool last = t == TT - 1;
  T acc[BB][kCols];
  if (!last) {  // Wh^T dgh_{t+1}: rows of dgh at step t+1, K = 3H
    const long lda = (long)TT * 3 * H;
    block_product<T, BB, VB>(c.dgh + ((long)b0 * TT + t + 1) * 3 * H, lda, 3 * H, c.Wp + (long)blk * kCols,
                             c.ldw, acc);
  }
  const int j_end = std::min(H, (blk + 1) * kCols);
  for (int bb = 0; bb < BB; ++bb)
    for (int j = blk * kCols; j < j_end; ++j) {
      const T wh_sum = last ? T(0) : acc[bb][j - blk * kCols];
      if (t < 0)
        dfk::gru_backward_dh0_finish<T>(c.dh_direct, c.dh0, H, b0 + bb, j, wh_sum);
      else
        dfk::gru_backward_finish<T>(c.dhs, c.gates, c.hs, c.h0, c.dgx, c.dgh, c.dh_direct, TT, H,
                                    b0 + bb, t, j, last, wh_sum);
    }
}

// Steps s = 0..T run t = T-1-s; the last step (t = -1) computes dh0.
template <typename T>
struct BackwardWorker {
  template <Isa isa>
  static DF_INLINE void run(const BackwardCtx<T>& c, StepTasks& tasks) {
    constexpr int BB = Tile<isa>::BB, VB = Tile<isa>::VB;
    for (long k = tasks.claim(); k >= 0; k = tasks.claim()) {
      const int s = (int)(k / tasks.per_step()), blk = (int)(k % tasks.per_step());
      const int t = c.d.T - 1 - s;
      tasks.wait_for_step(s);
      int b = 0;
      for (; b + BB <= c.d.B; b += BB) backward_tile<T, BB, VB>(c, t, blk, b);
      for (; b < c.d.B; ++b) backward_tile<T, 1, VB>(c, t, blk, b);
      tasks.finish();
    }
  }
};

// The workers' variant for this CPU: float only (double, for the float64 checks, runs the baseline).
template <class Worker, typename T, class Ctx>
isa::Entry<const Ctx&, StepTasks&> pick_worker() {
  return isa::variant<Worker, const Ctx&, StepTasks&>(std::is_same_v<T, float> ? isa::best() : Isa::Generic);
}

// Threads worth using: at most one per block, and none that would get less than ~64k
// multiply-adds per step (below that, handing steps between threads costs more than it saves).
int team_size(const GruDims& d, int blocks) {
  long work = (long)d.B * 3 * d.H * d.H;
  long by_work = std::max(1L, work / 65536);
  return (int)std::max(1L, std::min<long>({(long)num_threads(), (long)blocks, by_work}));
}

}  // namespace

template <typename T>
void gru_forward_cpu(const GruDims& d, const T* gx, const T* Wh, const T* bhn, const T* h0, T* hs,
                     T* gates) {
  const int blocks = (d.H + kUnits - 1) / kUnits;
  const T* Wp = pack_forward(Wh, d.H, blocks);
  ForwardCtx<T> c{d, gx, bhn, h0, Wp, (long)blocks * kCols, blocks, hs, gates};
  const int n = team_size(d, blocks);
  StepTasks tasks(d.T, blocks);
  auto fn = pick_worker<ForwardWorker<T>, T, ForwardCtx<T>>();
  run_team(n, [&](int) { fn(c, tasks); });
}

template <typename T>
void gru_backward_cpu(const GruDims& d, const T* dhs, const T* gates, const T* hs, const T* h0,
                      const T* Wh, T* dgx, T* dgh, T* dh0) {
  const int blocks = (d.H + kCols - 1) / kCols;
  const T* Wp = pack_backward(Wh, d.H, blocks);
  std::vector<T> dh_direct((size_t)d.B * d.H, T(0));
  BackwardCtx<T> c{d,   dhs, gates, hs,  h0, Wp, (long)blocks * kCols, blocks,
                   dgx, dgh, dh0,   dh_direct.data()};
  const int n = team_size(d, blocks);
  StepTasks tasks(d.T + 1, blocks);  // T reverse steps, then dh0
  auto fn = pick_worker<BackwardWorker<T>, T, BackwardCtx<T>>();
  run_team(n, [&](int) { fn(c, tasks); });
}

template void gru_forward_cpu<float>(const GruDims&, const float*, const float*, const float*,
                                     const float*, float*, float*);
template void gru_forward_cpu<double>(const GruDims&, const double*, const double*, const double*,
                                      const double*, double*, double*);
template void gru_backward_cpu<float>(const GruDims&, const float*, const float*, const float*,
                                      const float*, const float*, float*, float*, float*);
template void gru_backward_cpu<double>(const GruDims&, const double*, const double*, const double*,
                                       const double*, const double*, double*, double*, double*);

}  // namespace dfnet4
