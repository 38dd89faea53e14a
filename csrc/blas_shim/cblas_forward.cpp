// CBLAS routines libmlx imports (`nm -D --undefined-only libmlx.so | grep cblas_`), forwarded to
// scipy-openblas32. Its cblas.h declares only the scipy_-prefixed names.
#include <cblas.h>

#include "forward.h"

using Order = CBLAS_ORDER;
using Trans = CBLAS_TRANSPOSE;

DFNET4_SAME_SIGNATURE(cblas_sgemm, scipy_cblas_sgemm)
DFNET4_SHIM_EXPORT void cblas_sgemm(const Order order, const Trans ta, const Trans tb,
                                    const blasint m, const blasint n, const blasint k,
                                    const float alpha, const float* a, const blasint lda,
                                    const float* b, const blasint ldb, const float beta, float* c,
                                    const blasint ldc) {
  scipy_cblas_sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

DFNET4_SAME_SIGNATURE(cblas_dgemm, scipy_cblas_dgemm)
DFNET4_SHIM_EXPORT void cblas_dgemm(const Order order, const Trans ta, const Trans tb,
                                    const blasint m, const blasint n, const blasint k,
                                    const double alpha, const double* a, const blasint lda,
                                    const double* b, const blasint ldb, const double beta,
                                    double* c, const blasint ldc) {
  scipy_cblas_dgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

DFNET4_SAME_SIGNATURE(cblas_cgemm, scipy_cblas_cgemm)
DFNET4_SHIM_EXPORT void cblas_cgemm(const Order order, const Trans ta, const Trans tb,
                                    const blasint m, const blasint n, const blasint k,
                                    const void* alpha, const void* a, const blasint lda,
                                    const void* b, const blasint ldb, const void* beta, void* c,
                                    const blasint ldc) {
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

// OpenBLAS reads OPENBLAS_NUM_THREADS when it loads (at `import dfnet4`); this changes it later.
DFNET4_SHIM_EXPORT void dfnet4_blas_shim_set_openblas_threads(int threads) {
  scipy_openblas_set_num_threads(threads);
}
