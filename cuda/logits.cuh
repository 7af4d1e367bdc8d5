// The products of the GPU driver (posterior.cu, nearest.cu) on the GEMM tile of tile_gemm.cuh:
// the operand loaders and the logits product G = q . p_n of a chunk of queries (the GEMM
// expansion's dot products, cpp/include/mixscore/bound.hpp bounds their error).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels.cuh"
#include "tile_gemm.cuh"

namespace mixscore {
namespace cuda {

using S = TileShape;

// --- operand loaders (tile_gemm.cuh) ---------------------------------------------------------
template <typename T, typename Acc>
struct RowsLoad {  // rows of a row-major (rows x K) array, K contiguous: queries, prepared rows
  static constexpr bool kKContiguous = true;
  const T* a;
  int64_t rows, K;
  __device__ Acc operator()(int64_t r, int64_t k) const {
    return r < rows && k < K ? Acc(a[r * K + k]) : Acc(0);
  }
};

template <typename T, typename Acc>
struct CentredColumnsLoad {  // (X_k - mu)_r: training rows k, dimension r (r contiguous)
  static constexpr bool kKContiguous = false;
  const T* X;
  const double* mu;
  int64_t N, D;
  __device__ Acc operator()(int64_t r, int64_t k) const {
    return r < D && k < N ? Acc(double(X[k * D + r]) - mu[r]) : Acc(0);
  }
};

// G (m x N, row-major) = q (m x D) . packed (N x D)^T, products and sums in Acc.
template <typename T, typename Acc>
__global__ void __launch_bounds__(S::kThreads)
    logits_kernel(const T* q, const T* packed, int64_t m, int64_t N, int64_t D, Acc* G) {
  Acc acc[S::TM][S::TN];
  zero_tile(acc);
  const int64_t row0 = int64_t(blockIdx.y) * S::BM, col0 = int64_t(blockIdx.x) * S::BN;
  tile_product<Acc>(RowsLoad<T, Acc>{q, m, D}, RowsLoad<T, Acc>{packed, N, D}, row0, col0, 0,
                    D, acc);
  store_tile(acc, row0, col0, m, N, N, G);
}

// The logits grid: a block per 128 x 128 tile of (queries, points).
inline dim3 logits_grid(int64_t m, int64_t N) {
  return dim3(unsigned((N + S::BN - 1) / S::BN), unsigned((m + S::BM - 1) / S::BM));
}

template <typename T, typename Acc>
void launch_logits(const T* q, const T* packed, int64_t m, int64_t N, int64_t D, Acc* G,
                   cudaStream_t st) {
  MIXSCORE_LAUNCH((logits_kernel<T, Acc>), logits_grid(m, N), S::kThreads, 0, st, q, packed, m,
                  N, D, G);
  check(cudaGetLastError(), "logits kernel launch");
}

}  // namespace cuda
}  // namespace mixscore
