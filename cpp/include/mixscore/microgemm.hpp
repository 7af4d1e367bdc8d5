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

// M must be a multiple of kRowBlock. A: M x K (lda), B: K x N (ldb), C: M x N (ldc).
template <typename T>
void micro_gemm(int64_t M, int64_t N, int64_t K, const T* __restrict A, int64_t lda,
                const T* __restrict B, int64_t ldb, T* __restrict C, int64_t ldc) {
  constexpr int RJ = 2 * kVectorBytes / int(sizeof(T));
  constexpr int RI = kRowBlock;
  int64_t j0 = 0;
  for (; j0 + RJ <= N; j0 += RJ) {
    for (int64_t i0 = 0; i0 < M; i0 += RI) {
      T acc[RI][RJ] = {};
      for (int64_t k = 0; k < K; ++k) {
        const T* b = B + k * ldb + j0;
        for (int r = 0; r < RI; ++r) {
          const T a = A[(i0 + r) * lda + k];
#pragma omp simd
          for (int j = 0; j < RJ; ++j) acc[r][j] += a * b[j];
        }
      }
      for (int r = 0; r < RI; ++r)
        for (int j = 0; j < RJ; ++j) C[(i0 + r) * ldc + j0 + j] = acc[r][j];
    }
  }
  if (j0 < N) {  // remaining columns: the same chains, one column block narrower
    const int64_t nj = N - j0;
    for (int64_t i0 = 0; i0 < M; i0 += RI) {
      T acc[RI][RJ] = {};
      for (int64_t k = 0; k < K; ++k) {
        const T* b = B + k * ldb + j0;
        for (int r = 0; r < RI; ++r) {
          const T a = A[(i0 + r) * lda + k];
          for (int64_t j = 0; j < nj; ++j) acc[r][j] += a * b[j];
        }
      }
      for (int r = 0; r < RI; ++r)
        for (int64_t j = 0; j < nj; ++j) C[(i0 + r) * ldc + j0 + j] = acc[r][j];
    }
  }
}

}  // namespace mixscore
