// The GEMM-shaped stage: C[i][j] = sum_k A[i][k] B[k][j] with register blocking.
//
// Why not BLAS: OpenBLAS (and MKL) results for a row depend on the row's position inside the
// call (edge kernels, different FMA grouping), so a query's score would change with how the
// queries were split into batches. Here every C[i][j] is one sequential FMA chain over k in
// increasing order, whatever the blocking: bit-identical for any batch split or thread count.
// Compiled per instruction set (the vector width below); the compiler vectorizes over j.
#pragma once
#include <algorithm>
#include <cstdint>

namespace mixscore {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
constexpr int kRowBlock = 8;
#elif defined(__AVX2__)
constexpr int kVectorBytes = 32;
constexpr int kRowBlock = 4;
#else
constexpr int kVectorBytes = 16;
constexpr int kRowBlock = 4;
#endif

// Rows [0, M) x columns [j0, j0 + NJ) for k in [k0, k1), continuing the chains already in C
// when k0 > 0 (same precision, same order: the blocking does not change the bits).
template <typename T, int NJ>
inline void block_columns(int64_t M, int64_t k0, int64_t k1, const T* __restrict A, int64_t lda,
                          const T* __restrict B, int64_t ldb, T* __restrict C, int64_t ldc) {
  constexpr int RI = kRowBlock;
  for (int64_t i0 = 0; i0 < M; i0 += RI) {
    T acc[RI][NJ] = {};
    if (k0 > 0)
      for (int r = 0; r < RI; ++r)
        for (int j = 0; j < NJ; ++j) acc[r][j] = C[(i0 + r) * ldc + j];
    for (int64_t k = k0; k < k1; ++k) {
      const T* b = B + k * ldb;
      for (int r = 0; r < RI; ++r) {
        const T a = A[(i0 + r) * lda + k];
#pragma omp simd
        for (int j = 0; j < NJ; ++j) acc[r][j] += a * b[j];
      }
    }
    for (int r = 0; r < RI; ++r)
      for (int j = 0; j < NJ; ++j) C[(i0 + r) * ldc + j] = acc[r][j];
  }
}

// M must be a multiple of kRowBlock and K >= 1. A: M x K (lda), B: K x N (ldb), C: M x N (ldc).
template <typename T>
void micro_gemm(int64_t M, int64_t N, int64_t K, const T* __restrict A, int64_t lda,
                const T* __restrict B, int64_t ldb, T* __restrict C, int64_t ldc) {
  constexpr int RJ = 2 * kVectorBytes / int(sizeof(T));
  constexpr int64_t KC = 256;  // a KC x RJ slice of B stays in L1 across the row blocks
  const int64_t nfull = N - N % RJ;
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    const int64_t k1 = std::min(K, k0 + KC);
    for (int64_t j0 = 0; j0 < nfull; j0 += RJ)
      block_columns<T, RJ>(M, k0, k1, A, lda, B + j0, ldb, C + j0, ldc);
    for (int64_t j0 = nfull; j0 < N; ++j0)  // remaining columns one at a time
      block_columns<T, 1>(M, k0, k1, A, lda, B + j0, ldb, C + j0, ldc);
  }
}

}  // namespace mixscore
