// CBLAS routines libmlx imports (`nm -D --undefined-only libmlx.so | grep cblas_`), forwarded to
// scipy-openblas32. Its cblas.h declares only the scipy_-prefixed names.
#include <cblas.h>

#include <cstdlib>
#include <cstring>

#include "forward.h"
#include "split_gemm.h"

using Order = CBLAS_ORDER;
using Trans = CBLAS_TRANSPOSE;

DFNET4_SAME_SIGNATURE(cblas_sgemm, scipy_cblas_sgemm)
DFNET4_SHIM_EXPORT void cblas_sgemm(const Order order, const Trans ta, const Trans tb,
                                    const blasint m, const blasint n, const blasint k,
                                    const float alpha, const float* a, const blasint lda,
                                    const float* b, const blasint ldb, const float beta, float* c,
                                    const blasint ldc) {
  dfnet4::blas_shim::split_gemm(order, ta, tb, m, n, k, a, lda, b, ldb, c, ldc,
      [&](blasint mp, blasint np, const float* ap, const float* bp, float* cp) {
        scipy_cblas_sgemm(order, ta, tb, mp, np, k, alpha, ap, lda, bp, ldb, beta, cp, ldc);
      });
}

DFNET4_SAME_SIGNATURE(cblas_dgemm, scipy_cblas_dgemm)
DFNET4_SHIM_EXPORT void cblas_dgemm(const Order order, const Trans ta, const Trans tb,
                                    const blasint m, const blasint n, const blasint k,
                                    const double alpha, const double* a, const blasint lda,
                                    const double* b, const blasint ldb, const double beta,
                                    double* c, const blasint ldc) {
  // not split: OpenBLAS's dgemm rounds differently for some block shapes (a split product would
  // change with the thread count), and float64 products serve checks, not training
  scipy_cblas_dgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

DFNET4_SAME_SIGNATURE(cblas_cgemm, scipy_cblas_cgemm)
DFNET4_SHIM_EXPORT void cblas_cgemm(const Order order, const Trans ta, const Trans tb,
                                    const blasint m, const blasint n, const blasint k,
                                    const void* alpha, const void* a, const blasint lda,
                                    const void* b, const blasint ldb, const void* beta, void* c,
                                    const blasint ldc) {
  // not split, as dgemm: some block shapes round differently in OpenBLAS's cgemm, and MLX's
  // complex products are rare in training (the spectra are multiplied elementwise)
  scipy_cblas_cgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// Marker the Python side looks up with dlsym(RTLD_DEFAULT, ...) to tell whether the shim is in the
// process's global scope (loaded by `import dfnet4` or LD_PRELOAD), and OpenBLAS's build string.
DFNET4_SHIM_EXPORT const char* dfnet4_blas_shim_openblas_config() {
  return scipy_openblas_get_config();
}

DFNET4_SHIM_EXPORT int dfnet4_blas_shim_openblas_threads() {
  return scipy_openblas_get_num_threads();
}

int dfnet4::blas_shim::split_threads() {
  const char* off = std::getenv("DFNET4_BLAS_SPLIT");  // "0": never split (A/B runs, bench/blas.py)
  if (off != nullptr && std::strcmp(off, "0") == 0) return 0;
  return scipy_openblas_get_num_threads() == 1 ? dfnet4::num_threads() : 0;
}

DFNET4_SHIM_EXPORT int dfnet4_blas_shim_split_threads() {
  return dfnet4::blas_shim::split_threads();
}

DFNET4_SHIM_EXPORT long dfnet4_blas_shim_split_products() {
  return dfnet4::blas_shim::split_products.load();
}

DFNET4_SHIM_EXPORT long dfnet4_blas_shim_helper_blocks() {
  return dfnet4::blas_shim::helper_blocks.load();
}

// OpenBLAS reads OPENBLAS_NUM_THREADS when it loads (at `import dfnet4`); this changes it later.
DFNET4_SHIM_EXPORT void dfnet4_blas_shim_set_openblas_threads(int threads) {
  scipy_openblas_set_num_threads(threads);
}
