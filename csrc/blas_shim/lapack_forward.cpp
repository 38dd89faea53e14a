// LAPACK routines libmlx imports (linalg: inv, cholesky, qr, svd, eig, eigh, lu, tri_inv),
// forwarded to scipy-openblas32's scipy_-prefixed copies. Its lapack.h declares the standard
// Fortran names (e.g. sgetrf_) with the trailing hidden string-length arguments gfortran passes.
#include <complex>
#define LAPACK_COMPLEX_CUSTOM
#define lapack_complex_float std::complex<float>
#define lapack_complex_double std::complex<double>
#include <lapack.h>

#include "forward.h"

using I = lapack_int;
using Len = FORTRAN_STRLEN;
using cf = lapack_complex_float;

// --- LU factorisation and inverse ----------------------------------------------------------
DFNET4_SAME_SIGNATURE(scipy_sgetrf_, sgetrf_)
DFNET4_SHIM_EXPORT void sgetrf_(const I* m, const I* n, float* a, const I* lda, I* ipiv, I* info) {
  scipy_sgetrf_(m, n, a, lda, ipiv, info);
}
DFNET4_SAME_SIGNATURE(scipy_dgetrf_, dgetrf_)
DFNET4_SHIM_EXPORT void dgetrf_(const I* m, const I* n, double* a, const I* lda, I* ipiv, I* info) {
  scipy_dgetrf_(m, n, a, lda, ipiv, info);
}
DFNET4_SAME_SIGNATURE(scipy_sgetri_, sgetri_)
DFNET4_SHIM_EXPORT void sgetri_(const I* n, float* a, const I* lda, const I* ipiv, float* work,
                                const I* lwork, I* info) {
  scipy_sgetri_(n, a, lda, ipiv, work, lwork, info);
}
DFNET4_SAME_SIGNATURE(scipy_dgetri_, dgetri_)
DFNET4_SHIM_EXPORT void dgetri_(const I* n, double* a, const I* lda, const I* ipiv, double* work,
                                const I* lwork, I* info) {
  scipy_dgetri_(n, a, lda, ipiv, work, lwork, info);
}

// --- Cholesky and triangular inverse -------------------------------------------------------
DFNET4_SAME_SIGNATURE(scipy_spotrf_, spotrf_)
DFNET4_SHIM_EXPORT void spotrf_(const char* uplo, const I* n, float* a, const I* lda, I* info,
                                Len uplo_len) {
  scipy_spotrf_(uplo, n, a, lda, info, uplo_len);
}
DFNET4_SAME_SIGNATURE(scipy_dpotrf_, dpotrf_)
DFNET4_SHIM_EXPORT void dpotrf_(const char* uplo, const I* n, double* a, const I* lda, I* info,
                                Len uplo_len) {
  scipy_dpotrf_(uplo, n, a, lda, info, uplo_len);
}
DFNET4_SAME_SIGNATURE(scipy_strtri_, strtri_)
DFNET4_SHIM_EXPORT void strtri_(const char* uplo, const char* diag, const I* n, float* a,
                                const I* lda, I* info, Len uplo_len, Len diag_len) {
  scipy_strtri_(uplo, diag, n, a, lda, info, uplo_len, diag_len);
}
DFNET4_SAME_SIGNATURE(scipy_dtrtri_, dtrtri_)
DFNET4_SHIM_EXPORT void dtrtri_(const char* uplo, const char* diag, const I* n, double* a,
                                const I* lda, I* info, Len uplo_len, Len diag_len) {
  scipy_dtrtri_(uplo, diag, n, a, lda, info, uplo_len, diag_len);
}

// --- QR ------------------------------------------------------------------------------------
DFNET4_SAME_SIGNATURE(scipy_sgeqrf_, sgeqrf_)
DFNET4_SHIM_EXPORT void sgeqrf_(const I* m, const I* n, float* a, const I* lda, float* tau,
                                float* work, const I* lwork, I* info) {
  scipy_sgeqrf_(m, n, a, lda, tau, work, lwork, info);
}
DFNET4_SAME_SIGNATURE(scipy_dgeqrf_, dgeqrf_)
DFNET4_SHIM_EXPORT void dgeqrf_(const I* m, const I* n, double* a, const I* lda, double* tau,
                                double* work, const I* lwork, I* info) {
  scipy_dgeqrf_(m, n, a, lda, tau, work, lwork, info);
}
DFNET4_SAME_SIGNATURE(scipy_sorgqr_, sorgqr_)
DFNET4_SHIM_EXPORT void sorgqr_(const I* m, const I* n, const I* k, float* a, const I* lda,
                                const float* tau, float* work, const I* lwork, I* info) {
  scipy_sorgqr_(m, n, k, a, lda, tau, work, lwork, info);
}
DFNET4_SAME_SIGNATURE(scipy_dorgqr_, dorgqr_)
DFNET4_SHIM_EXPORT void dorgqr_(const I* m, const I* n, const I* k, double* a, const I* lda,
                                const double* tau, double* work, const I* lwork, I* info) {
  scipy_dorgqr_(m, n, k, a, lda, tau, work, lwork, info);
}

// --- SVD -----------------------------------------------------------------------------------
DFNET4_SAME_SIGNATURE(scipy_sgesdd_, sgesdd_)
DFNET4_SHIM_EXPORT void sgesdd_(const char* jobz, const I* m, const I* n, float* a, const I* lda,
                                float* s, float* u, const I* ldu, float* vt, const I* ldvt,
                                float* work, const I* lwork, I* iwork, I* info, Len jobz_len) {
  scipy_sgesdd_(jobz, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, iwork, info, jobz_len);
}
DFNET4_SAME_SIGNATURE(scipy_dgesdd_, dgesdd_)
DFNET4_SHIM_EXPORT void dgesdd_(const char* jobz, const I* m, const I* n, double* a, const I* lda,
                                double* s, double* u, const I* ldu, double* vt, const I* ldvt,
                                double* work, const I* lwork, I* iwork, I* info, Len jobz_len) {
  scipy_dgesdd_(jobz, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, iwork, info, jobz_len);
}
DFNET4_SAME_SIGNATURE(scipy_cgesdd_, cgesdd_)
DFNET4_SHIM_EXPORT void cgesdd_(const char* jobz, const I* m, const I* n, cf* a, const I* lda,
                                float* s, cf* u, const I* ldu, cf* vt, const I* ldvt, cf* work,
                                const I* lwork, float* rwork, I* iwork, I* info, Len jobz_len) {
  scipy_cgesdd_(jobz, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, rwork, iwork, info,
                jobz_len);
}

// --- Eigenvalues (general) -----------------------------------------------------------------
DFNET4_SAME_SIGNATURE(scipy_sgeev_, sgeev_)
DFNET4_SHIM_EXPORT void sgeev_(const char* jobvl, const char* jobvr, const I* n, float* a,
                               const I* lda, float* wr, float* wi, float* vl, const I* ldvl,
                               float* vr, const I* ldvr, float* work, const I* lwork, I* info,
                               Len jobvl_len, Len jobvr_len) {
  scipy_sgeev_(jobvl, jobvr, n, a, lda, wr, wi, vl, ldvl, vr, ldvr, work, lwork, info, jobvl_len,
               jobvr_len);
}
DFNET4_SAME_SIGNATURE(scipy_dgeev_, dgeev_)
DFNET4_SHIM_EXPORT void dgeev_(const char* jobvl, const char* jobvr, const I* n, double* a,
                               const I* lda, double* wr, double* wi, double* vl, const I* ldvl,
                               double* vr, const I* ldvr, double* work, const I* lwork, I* info,
                               Len jobvl_len, Len jobvr_len) {
  scipy_dgeev_(jobvl, jobvr, n, a, lda, wr, wi, vl, ldvl, vr, ldvr, work, lwork, info, jobvl_len,
               jobvr_len);
}
DFNET4_SAME_SIGNATURE(scipy_cgeev_, cgeev_)
DFNET4_SHIM_EXPORT void cgeev_(const char* jobvl, const char* jobvr, const I* n, cf* a,
                               const I* lda, cf* w, cf* vl, const I* ldvl, cf* vr, const I* ldvr,
                               cf* work, const I* lwork, float* rwork, I* info, Len jobvl_len,
                               Len jobvr_len) {
  scipy_cgeev_(jobvl, jobvr, n, a, lda, w, vl, ldvl, vr, ldvr, work, lwork, rwork, info,
               jobvl_len, jobvr_len);
}

// --- Eigenvalues (symmetric / Hermitian) ---------------------------------------------------
DFNET4_SAME_SIGNATURE(scipy_ssyevd_, ssyevd_)
DFNET4_SHIM_EXPORT void ssyevd_(const char* jobz, const char* uplo, const I* n, float* a,
                                const I* lda, float* w, float* work, const I* lwork, I* iwork,
                                const I* liwork, I* info, Len jobz_len, Len uplo_len) {
  scipy_ssyevd_(jobz, uplo, n, a, lda, w, work, lwork, iwork, liwork, info, jobz_len, uplo_len);
}
DFNET4_SAME_SIGNATURE(scipy_dsyevd_, dsyevd_)
DFNET4_SHIM_EXPORT void dsyevd_(const char* jobz, const char* uplo, const I* n, double* a,
                                const I* lda, double* w, double* work, const I* lwork, I* iwork,
                                const I* liwork, I* info, Len jobz_len, Len uplo_len) {
  scipy_dsyevd_(jobz, uplo, n, a, lda, w, work, lwork, iwork, liwork, info, jobz_len, uplo_len);
}
DFNET4_SAME_SIGNATURE(scipy_cheevd_, cheevd_)
DFNET4_SHIM_EXPORT void cheevd_(const char* jobz, const char* uplo, const I* n, cf* a,
                                const I* lda, float* w, cf* work, const I* lwork, float* rwork,
                                const I* lrwork, I* iwork, const I* liwork, I* info, Len jobz_len,
                                Len uplo_len) {
  scipy_cheevd_(jobz, uplo, n, a, lda, w, work, lwork, rwork, lrwork, iwork, liwork, info,
                jobz_len, uplo_len);
}
