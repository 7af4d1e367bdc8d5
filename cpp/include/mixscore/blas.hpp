// Single-threaded GEMM from the scipy-openblas32 wheel (row-major C = A * op(B)).
#pragma once
#include <cstdint>

extern "C" {
void scipy_cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha,
                       const float* a, int lda, const float* b, int ldb, float beta, float* c,
                       int ldc);
void scipy_cblas_dgemm(int order, int transa, int transb, int m, int n, int k, double alpha,
                       const double* a, int lda, const double* b, int ldb, double beta, double* c,
                       int ldc);
void scipy_openblas_set_num_threads(int);
int scipy_openblas_get_num_threads(void);
char* scipy_openblas_get_corename(void);
}

namespace mixscore::blas {
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

// C (m x n, leading dimension ldc) = A (m x k) * B^T where B is n x k.
inline void gemm_abt(int m, int n, int k, const float* a, const float* b, float* c, int ldc) {
  scipy_cblas_sgemm(kRowMajor, kNoTrans, kTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c, ldc);
}
inline void gemm_abt(int m, int n, int k, const double* a, const double* b, double* c, int ldc) {
  scipy_cblas_dgemm(kRowMajor, kNoTrans, kTrans, m, n, k, 1.0, a, k, b, k, 0.0, c, ldc);
}
// C (m x n) = A (m x k) * B where B is k x n; A has leading dimension lda.
inline void gemm_ab(int m, int n, int k, const float* a, int lda, const float* b, float* c) {
  scipy_cblas_sgemm(kRowMajor, kNoTrans, kNoTrans, m, n, k, 1.0f, a, lda, b, n, 0.0f, c, n);
}
inline void gemm_ab(int m, int n, int k, const double* a, int lda, const double* b, double* c) {
  scipy_cblas_dgemm(kRowMajor, kNoTrans, kNoTrans, m, n, k, 1.0, a, lda, b, n, 0.0, c, n);
}
}  // namespace mixscore::blas
