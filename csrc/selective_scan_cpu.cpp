// CPU evaluation of the selective scan: the same kernel bodies the Metal kernels call, looped over
// (batch, channel) on our own threads (MLX's CPU backend does no intra-op threading). The loops
// over `state` in the bodies vectorise; each range loop is compiled per instruction set (cpu_isa.h).
#include "selective_scan_cpu.h"

#include <algorithm>
#include <cstring>
#include <initializer_list>

#include "cpu_isa.h"
#include "kernels/selective_scan_bwd.h"
#include "kernels/selective_scan_fwd.h"
#include "parallel.h"

namespace dfnet4::scan_cpu {
namespace {

using isa::Isa;

// Software prefetch into L2 of `rows` rows, `stride` elements apart, of elements [d0, d1) from
// `base` (RW: 0 to read, 1 to write). A block of channels walks the (batch, time, channels) arrays
// one row (channels * 4 bytes, a new page every few rows) per time step, which the hardware
// prefetchers do not follow: without this the loads at the top of every chunk stall on memory.
// Not into L1: rows a power of two apart fall into the same few L1 sets, so lines fetched a chunk
// early would only evict each other there (measured: L1 prefetch ~1/3 of the gain of L2 prefetch).
template <int RW, typename S>
DF_INLINE void prefetch_rows(const S* base, long stride, int rows, int d0, int d1) {
  if (!base) return;  // an absent optional array
  for (int r = 0; r < rows; ++r) {
    const S* row = base + r * stride;
    for (int d = d0; d < d1; d += 64 / sizeof(S)) __builtin_prefetch(row + d, RW, 2);
    __builtin_prefetch(row + d1 - 1, RW, 2);  // the last line when [d0, d1) is not line-aligned
  }
}

// Rows of time chunk c of a (batch, time, channels) array, channels [d0, d1) of batch row b.
template <int RW, typename S>
DF_INLINE void prefetch_chunk(const dfk::ScanParams& p, const S* a, int b, int c, int d0, int d1) {
  const int t0 = c * dfk::kScanChunk;
  const int rows = std::min(static_cast<int>(dfk::kScanChunk), p.length - t0);
  prefetch_rows<RW>(a ? a + (static_cast<long>(b) * p.length + t0) * p.channels : a, p.channels, rows, d0, d1);
}

// Block j of the flattened (batch, channel block) grid: batch row b, channels [d0, d_end) (kScanBlock,
// fewer at the row's end), of which [d0, d1) are `groups` full vector groups and [d1, d_end) the
// leftover channels that run one at a time.
template <typename S>
struct Block {
  int b, d0, d1, d_end, groups;
  Block(const dfk::ScanParams& p, long j)
      : b(static_cast<int>(j / p.n_blocks)),
        d0(static_cast<int>(j % p.n_blocks) * dfk::kScanBlock),
        d_end(std::min(p.channels, d0 + static_cast<int>(dfk::kScanBlock))),
        groups((d_end - d0) / dfk::Wide<S>::width) {
    d1 = d0 + groups * dfk::Wide<S>::width;
  }
};

// What the forward reads and writes in chunk c for channels [d0, d1) of batch row b.
template <typename S>
DF_INLINE void prefetch_forward_chunk(const dfk::ScanParams& p, const ForwardBuffers<S>& f, int b, int c,
                                      int d0, int d1) {
  for (const S* a : {f.u, f.delta, f.z}) prefetch_chunk<0>(p, a, b, c, d0, d1);
  prefetch_chunk<1>(p, f.out, b, c, d0, d1);
  prefetch_rows<1>(f.ckpt + (static_cast<long>(b) * p.n_chunks + c) * p.state * p.channels, p.channels, p.state,
                   d0, d1);
}

// Channel blocks [begin, end) of the flattened (batch, block) grid, as in the backward: chunks
// outside, the block's full vector groups and then its leftover channels inside, so that channels
// one at a time still share each row's cache lines while they are hot.
template <typename S, int MAXN, int NFIX>
struct ForwardRange {
  template <Isa>
  static DF_INLINE void run(const dfk::ScanParams& p, const ForwardBuffers<S>& f, long begin, long end) {
    typedef typename dfk::Wide<S>::type V;
    constexpr int W = dfk::Wide<S>::width;
    dfk::ScanFwdCarry<V, MAXN> cy[dfk::kScanBlock / W];
    dfk::ScanFwdCarry<S, MAXN> cy1[W];
    for (long j = begin; j < end; ++j) {
      const Block<S> k(p, j);
      for (int i = 0; i < k.groups; ++i) {
        dfk::scan_forward_init<V, MAXN, NFIX>(p, k.b, k.d0 + i * W, f.A, f.h0, cy[i]);
      }
      for (int d = k.d1; d < k.d_end; ++d) {
        dfk::scan_forward_init<S, MAXN, NFIX>(p, k.b, d, f.A, f.h0, cy1[d - k.d1]);
      }
      for (int c = 0; c < p.n_chunks; ++c) {
        if (c + 1 < p.n_chunks) prefetch_forward_chunk(p, f, k.b, c + 1, k.d0, k.d_end);
        for (int i = 0; i < k.groups; ++i) {
          dfk::scan_forward_chunk<V, MAXN, NFIX>(p, k.b, k.d0 + i * W, c, f.u, f.delta, f.B, f.C, f.D, f.z, f.bias,
                                                 f.out, f.ckpt, cy[i]);
        }
        for (int d = k.d1; d < k.d_end; ++d) {
          dfk::scan_forward_chunk<S, MAXN, NFIX>(p, k.b, d, c, f.u, f.delta, f.B, f.C, f.D, f.z, f.bias, f.out,
                                                 f.ckpt, cy1[d - k.d1]);
        }
      }
      for (int i = 0; i < k.groups; ++i) {
        dfk::scan_forward_finish<V, MAXN, NFIX>(p, k.b, k.d0 + i * W, f.last, cy[i]);
      }
      for (int d = k.d1; d < k.d_end; ++d) {
        dfk::scan_forward_finish<S, MAXN, NFIX>(p, k.b, d, f.last, cy1[d - k.d1]);
      }
    }
  }
};

// What the backward reads and writes in chunk c for channels [d0, d1) of batch row b.
template <typename S>
DF_INLINE void prefetch_backward_chunk(const dfk::ScanParams& p, const BackwardBuffers<S>& g, int b, int c,
                                       int d0, int d1) {
  for (const S* a : {g.u, g.delta, g.dout, g.z}) prefetch_chunk<0>(p, a, b, c, d0, d1);
  for (const S* a : {g.du, g.ddelta, g.dz, g.out}) prefetch_chunk<1>(p, a, b, c, d0, d1);
  prefetch_rows<0>(g.ckpt + (static_cast<long>(b) * p.n_chunks + c) * p.state * p.channels, p.channels, p.state,
                   d0, d1);
}

// Channel blocks [begin, end) of the flattened (batch, block) grid. One worker owns a block, so it
// can sum the block's channels into the dB/dC partials without atomics. Chunks outside, the block's
// channels inside: the chunk's rows of the partials stay in L1 across channels. The block's full
// vector groups run first, then its leftover channels one by one, in a fixed order, so the sums do
// not depend on the thread count.
template <typename S, int MAXN, int NFIX>
struct BackwardRange {
  template <Isa>
  static DF_INLINE void run(const dfk::ScanParams& p, const BackwardBuffers<S>& g, long begin, long end) {
    typedef typename dfk::Wide<S>::type V;
    constexpr int W = dfk::Wide<S>::width;
    V sah[dfk::kScanChunk * MAXN], sa[dfk::kScanChunk * MAXN];
    S sah1[dfk::kScanChunk * MAXN], sa1[dfk::kScanChunk * MAXN];
    dfk::ScanBwdCarry<V, MAXN> cy[dfk::kScanBlock / W];
    dfk::ScanBwdCarry<S, MAXN> cy1[W];
    const dfk::ScanCpuLane<MAXN> lane;
    const long part = static_cast<long>(p.length) * p.state;  // one block's partial, in elements
    for (long j = begin; j < end; ++j) {
      const Block<S> k(p, j);
      std::memset(g.dB_part + j * part, 0, sizeof(S) * part);
      std::memset(g.dC_part + j * part, 0, sizeof(S) * part);
      for (int i = 0; i < k.groups; ++i) {
        dfk::scan_backward_init<V, MAXN, NFIX>(p, k.b, k.d0 + i * W, g.A, g.dlast, cy[i]);
      }
      for (int d = k.d1; d < k.d_end; ++d) {
        dfk::scan_backward_init<S, MAXN, NFIX>(p, k.b, d, g.A, g.dlast, cy1[d - k.d1]);
      }
      for (int c = p.n_chunks - 1; c >= 0; --c) {
        if (c > 0) prefetch_backward_chunk(p, g, k.b, c - 1, k.d0, k.d_end);
        for (int i = 0; i < k.groups; ++i) {
          dfk::scan_backward_chunk<V, MAXN, NFIX>(p, k.b, k.d0 + i * W, c, lane, g.u, g.delta, g.B, g.C, g.D, g.z,
                                                  g.bias, g.ckpt, g.dout, g.du, g.ddelta, g.dz, g.out,
                                                  g.dB_part, g.dC_part, sah, sa, cy[i]);
        }
        for (int d = k.d1; d < k.d_end; ++d) {
          dfk::scan_backward_chunk<S, MAXN, NFIX>(p, k.b, d, c, lane, g.u, g.delta, g.B, g.C, g.D, g.z, g.bias,
                                                  g.ckpt, g.dout, g.du, g.ddelta, g.dz, g.out, g.dB_part,
                                                  g.dC_part, sah1, sa1, cy1[d - k.d1]);
        }
      }
      for (int i = 0; i < k.groups; ++i) {
        dfk::scan_backward_finish<V, MAXN, NFIX>(p, k.b, k.d0 + i * W, lane, g.dA_part, g.dD_part, g.dbias_part,
                                                 g.dh0, cy[i]);
      }
      for (int d = k.d1; d < k.d_end; ++d) {
        dfk::scan_backward_finish<S, MAXN, NFIX>(p, k.b, d, lane, g.dA_part, g.dD_part, g.dbias_part, g.dh0,
                                                 cy1[d - k.d1]);
      }
    }
  }
};

// One (batch, channel block) per piece, each run by the range loop's variant for this CPU.
template <class Range, typename Buffers>
void run_blocks(const dfk::ScanParams& p, const Buffers& buf) {
  const auto range = isa::variant<Range, const dfk::ScanParams&, const Buffers&, long, long>(isa::best());
  const long blocks = static_cast<long>(p.batch) * p.n_blocks;
  dynamic_for(blocks, 1, [&](long begin, long end) { range(p, buf, begin, end); });
}

template <typename T, int MAXN, int NFIX>
void run_forward(const dfk::ScanParams& p, const ForwardBuffers<T>& f) {
  run_blocks<ForwardRange<T, MAXN, NFIX>>(p, f);
}

template <typename T, int MAXN, int NFIX>
void run_backward(const dfk::ScanParams& p, const BackwardBuffers<T>& g) {
  run_blocks<BackwardRange<T, MAXN, NFIX>>(p, g);
}

// state 16 (Mamba's default) gets fully unrolled vector loops; other sizes the runtime-count ones.
template <typename T>
void forward_any(const dfk::ScanParams& p, const ForwardBuffers<T>& f) {
  if (p.state == 16) return run_forward<T, 16, 16>(p, f);
  if (p.state < 16) return run_forward<T, 16, 0>(p, f);
  return run_forward<T, dfk::kScanMaxState, 0>(p, f);
}

template <typename T>
void backward_any(const dfk::ScanParams& p, const BackwardBuffers<T>& g) {
  if (p.state == 16) return run_backward<T, 16, 16>(p, g);
  if (p.state < 16) return run_backward<T, 16, 0>(p, g);
  return run_backward<T, dfk::kScanMaxState, 0>(p, g);
}

template <typename T>
struct SumRange {
  template <Isa>
  static DF_INLINE void run(const T* src, T* dst, int count, long inner, long begin, long end) {
    for (long e = begin; e < end; ++e) dfk::scan_sum_partials<T>(src, dst, count, inner, e / inner, e % inner);
  }
};

template <typename T>
void sum_any(const T* src, T* dst, int outer, int count, long inner) {
  const auto range = isa::variant<SumRange<T>, const T*, T*, int, long, long, long>(isa::best());
  parallel_for(static_cast<long>(outer) * inner, [&](long begin, long end, int) {
    range(src, dst, count, inner, begin, end);
  });
}

}  // namespace

void sum_partials(const float* src, float* dst, int outer, int count, long inner) {
  sum_any(src, dst, outer, count, inner);
}
void sum_partials(const double* src, double* dst, int outer, int count, long inner) {
  sum_any(src, dst, outer, count, inner);
}

void forward(const dfk::ScanParams& p, const ForwardBuffers<float>& f) { forward_any(p, f); }
void forward(const dfk::ScanParams& p, const ForwardBuffers<double>& f) { forward_any(p, f); }
void backward(const dfk::ScanParams& p, const BackwardBuffers<float>& g) { backward_any(p, g); }
void backward(const dfk::ScanParams& p, const BackwardBuffers<double>& g) { backward_any(p, g); }

}  // namespace dfnet4::scan_cpu
