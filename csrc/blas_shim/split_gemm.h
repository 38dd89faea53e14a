// Large float32 products split across dfnet4's own threads, each block a one-thread OpenBLAS call.
// OpenBLAS's own workers spin while they wait and fight dfnet4's kernel threads for the cores
// (docs/blas.md); ours sleep between products (team.h).
#pragma once
#include <algorithm>
#include <atomic>
#include <functional>
#include <thread>

#include "../parallel.h"  // num_threads
#include "team.h"

namespace dfnet4::blas_shim {

// Threads a large product is split over: dfnet4's (DFNET4_NUM_THREADS, else the cores) while
// OpenBLAS runs one thread per call (dfnet4's default); none when OpenBLAS threads itself or
// DFNET4_BLAS_SPLIT=0.
int split_threads();

// Products split so far, and blocks a helper thread (not the caller) ran: tests read them through
// dfnet4_blas_shim_split_products / dfnet4_blas_shim_helper_blocks.
inline std::atomic<long> split_products{0};
inline std::atomic<long> helper_blocks{0};

// Splits C (m x n) into blocks of rows, or of columns when n is the larger side, and calls
// gemm(rows, cols, a, b, c) on each block with the operand pointers offset to it; threads take
// blocks as they free up. OpenBLAS's sgemm computes a row (column) of C the same way in any block
// of this size (>= 64 rows, >= 16 MFLOP), so the result is bit-identical to the unsplit call
// whatever the thread count (tests/test_blas.py).
template <typename T, typename Gemm>
void split_gemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k,
                const T* a, blasint lda, const T* b, blasint ldb, T* c, blasint ldc, Gemm&& gemm) {
  // a smaller block costs more in hand-over than it saves (measured on 2 cores with a thread started
  // per product: a split 17-MFLOP product was slower, a 33-MFLOP one 10 % faster, 70 MFLOP 20-25 %)
  constexpr double min_flops = 16e6;
  // Each block repacks the whole other operand (OpenBLAS packs B for a block of rows): blocks of
  // 32 rows made a 512^3 product slower than unsplit; from 64 rows the repacking is a few percent.
  constexpr long min_block = 64;
  // two per thread: a thread the OS delays leaves its second block to the others
  constexpr long blocks_per_thread = 2;
  const double flops = 2.0 * m * n * k;
  const bool by_rows = m >= n;
  const long side = by_rows ? m : n;
  // blocks of at least min_flops and min_block rows (columns), two per thread; the settings are
  // read only for a product big enough to split
  const long most = std::min<long>(side / min_block, static_cast<long>(flops / min_flops));
  const int threads = most >= 2 ? split_threads() : 0;
  const long blocks = std::min<long>(blocks_per_thread * threads, most);
  if (blocks < 2 || threads <= 1) {
    gemm(m, n, a, b, c);
    return;
  }
  const bool row_major = order == CblasRowMajor;
  split_products.fetch_add(1, std::memory_order_relaxed);
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<long> next{0};
  auto block = [&](long begin, long end) {
    const blasint len = static_cast<blasint>(end - begin);
    if (by_rows) {
      // row i of op(A): a row of A when (row-major, not transposed) or (column-major, transposed)
      const bool a_rows = row_major == (ta == CblasNoTrans);
      gemm(len, n, a + begin * (a_rows ? lda : 1), b, c + begin * (row_major ? ldc : 1));
    } else {
      const bool b_cols = row_major == (tb == CblasNoTrans);  // column j of op(B) at b + j
      gemm(m, len, a, b + begin * (b_cols ? 1 : ldb), c + begin * (row_major ? 1 : ldc));
    }
  };
  // Balanced blocks (block i: [side*i/blocks, side*(i+1)/blocks)), so none is smaller than
  // side/blocks: OpenBLAS takes another path for very small calls (a few rows), whose rounding
  // differs, and a ceil-sized grain could leave such a remainder as the last block.
  const std::function<void()> work = [&] {
    for (long i = next.fetch_add(1); i < blocks; i = next.fetch_add(1)) {
      block(side * i / blocks, side * (i + 1) / blocks);
      if (std::this_thread::get_id() != caller) helper_blocks.fetch_add(1, std::memory_order_relaxed);
    }
  };
  team().run(work, static_cast<int>(std::min<long>(threads, blocks)) - 1);
}

}  // namespace dfnet4::blas_shim
