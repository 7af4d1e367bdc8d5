// The logits product G = q . p_n on tensor cores (sm_80 and newer), same block tile and
// shared-memory slabs as the SIMT product (tile_gemm.cuh), 8 warps of 32 x 64 outputs each:
//   float64 (DMMA, m8n8k4): the products of the float32 (or float64) values exact, float64
//     sums: the accuracy of the "wide" product at the FP64 tensor-core rate, which on
//     H100 / H200 equals the FP32 SIMT peak;
//   3xTF32 (opt-in, m16n16k8): each float32 value split as big + small, both TF32, and
//     G = sum a_s b_b + a_b b_s + a_b b_b accumulated in float32 (the dropped a_s b_s is
//     below 2^-22 |a| |b|). The caller bounds it with unit roundoff kTf32x3Unit over 3 D
//     accumulations (posterior.cu): a model of the tensor cores' float32 accumulation
//     (truncation of at most a few units of 2^-23), not an IEEE guarantee; its measured
//     error belongs in bench/RESULTS.md.
// Both sum every entry over k in a fixed order: deterministic for any launch shape.
#pragma once
#include <cuda_runtime.h>

#if defined(__CUDACC__)
#include <mma.h>
#endif

#include "logits.cuh"

#if defined(MIXSCORE_WMMA_SHIM) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
#define MIXSCORE_HAS_TENSOR_LOGITS 1
#else
#define MIXSCORE_HAS_TENSOR_LOGITS 0
#endif

namespace mixscore {
namespace cuda {

enum class Products : int { kSimt = 0, kFloat64Tensor = 1, kTf32x3 = 2 };
constexpr double kTf32x3Unit = 0x1p-20;  // covers the split (3 * 2^-22) and the accumulation

// Warp w of 8 owns rows (w / 2) * 32 .. + 32 and columns (w % 2) * 64 .. + 64 of the block
// tile; `stage` (64 values per warp) moves each fragment to G through bounds checks.
template <typename Frag, typename Acc>
__device__ inline void store_fragment(Frag& f, int fm, int fn, Acc* stage, int64_t r0,
                                      int64_t c0, int64_t m, int64_t N, Acc* G) {
#if MIXSCORE_HAS_TENSOR_LOGITS
  using namespace nvcuda;
  const int lane = threadIdx.x % 32;
  wmma::store_matrix_sync(stage, f, fn, wmma::mem_row_major);
  __syncwarp();
  for (int e = lane; e < fm * fn; e += 32) {
    const int64_t r = r0 + e / fn, c = c0 + e % fn;
    if (r < m && c < N) G[r * N + c] = stage[e];
  }
  __syncwarp();
#endif
}

template <typename T>
__global__ void __launch_bounds__(S::kThreads)
    logits_f64_tensor_kernel(const T* q, const T* packed, int64_t m, int64_t N, int64_t D,
                             double* G) {
#if MIXSCORE_HAS_TENSOR_LOGITS
  using namespace nvcuda;
  __shared__ __align__(32) double As[S::BK][S::BM];
  __shared__ __align__(32) double Bs[S::BK][S::BN];
  __shared__ __align__(32) double stage[8][64];
  const int warp = threadIdx.x / 32, wr = warp / 2, wc = warp % 2;
  wmma::fragment<wmma::accumulator, 8, 8, 4, double> acc[4][8];
  #pragma unroll
  for (auto& row : acc)
    #pragma unroll
    for (auto& f : row) wmma::fill_fragment(f, 0.0);
  const int64_t row0 = int64_t(blockIdx.y) * S::BM, col0 = int64_t(blockIdx.x) * S::BN;
  const RowsLoad<T, double> la{q, m, D}, lb{packed, N, D};
  for (int64_t k0 = 0; k0 < D; k0 += S::BK) {
    load_slab<double, S::BM>(la, row0, k0, As);
    load_slab<double, S::BN>(lb, col0, k0, Bs);
    __syncthreads();
    #pragma unroll
    for (int kk = 0; kk < S::BK; kk += 4) {
      // A(r, k) at As[k][r]: column-major with ldm BM; B(k, n) at Bs[k][n]: row-major
      wmma::fragment<wmma::matrix_a, 8, 8, 4, double, wmma::col_major> a[4];
      wmma::fragment<wmma::matrix_b, 8, 8, 4, double, wmma::row_major> b;
      #pragma unroll
      for (int i = 0; i < 4; ++i) wmma::load_matrix_sync(a[i], &As[kk][wr * 32 + i * 8], S::BM);
      #pragma unroll
      for (int j = 0; j < 8; ++j) {
        wmma::load_matrix_sync(b, &Bs[kk][wc * 64 + j * 8], S::BN);
        #pragma unroll
        for (int i = 0; i < 4; ++i) wmma::mma_sync(acc[i][j], a[i], b, acc[i][j]);
      }
    }
    __syncthreads();
  }
  #pragma unroll
  for (int i = 0; i < 4; ++i)
    #pragma unroll
    for (int j = 0; j < 8; ++j)
      store_fragment(acc[i][j], 8, 8, stage[warp], row0 + wr * 32 + i * 8,
                     col0 + wc * 64 + j * 8, m, N, G);
#endif
}

static __global__ void __launch_bounds__(S::kThreads)  // static: included by two .cu files
    logits_tf32x3_kernel(const float* q, const float* packed, int64_t m, int64_t N, int64_t D,
                         float* G) {
#if MIXSCORE_HAS_TENSOR_LOGITS
  using namespace nvcuda;
  __shared__ __align__(32) float As[S::BK][S::BM];
  __shared__ __align__(32) float Bs[S::BK][S::BN];
  __shared__ __align__(32) float stage[8][256];
  const int warp = threadIdx.x / 32, wr = warp / 2, wc = warp % 2;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][4];
  #pragma unroll
  for (auto& row : acc)
    #pragma unroll
    for (auto& f : row) wmma::fill_fragment(f, 0.0f);
  const int64_t row0 = int64_t(blockIdx.y) * S::BM, col0 = int64_t(blockIdx.x) * S::BN;
  const RowsLoad<float, float> la{q, m, D}, lb{packed, N, D};
  using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32,
                               wmma::col_major>;
  using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32,
                               wmma::row_major>;
  for (int64_t k0 = 0; k0 < D; k0 += S::BK) {
    load_slab<float, S::BM>(la, row0, k0, As);
    load_slab<float, S::BN>(lb, col0, k0, Bs);
    __syncthreads();
    FragA ab[2], as[2];
    #pragma unroll
    for (int i = 0; i < 2; ++i) {
      wmma::load_matrix_sync(ab[i], &As[0][wr * 32 + i * 16], S::BM);
      #pragma unroll
      for (int e = 0; e < ab[i].num_elements; ++e) {
        const float v = ab[i].x[e], big = wmma::__float_to_tf32(v);
        ab[i].x[e] = big;
        as[i].x[e] = wmma::__float_to_tf32(v - big);
      }
    }
    #pragma unroll
    for (int j = 0; j < 4; ++j) {
      FragB bb, bs;
      wmma::load_matrix_sync(bb, &Bs[0][wc * 64 + j * 16], S::BN);
      #pragma unroll
      for (int e = 0; e < bb.num_elements; ++e) {
        const float v = bb.x[e], big = wmma::__float_to_tf32(v);
        bb.x[e] = big;
        bs.x[e] = wmma::__float_to_tf32(v - big);
      }
      #pragma unroll
      for (int i = 0; i < 2; ++i) {  // the small terms first
        wmma::mma_sync(acc[i][j], as[i], bb, acc[i][j]);
        wmma::mma_sync(acc[i][j], ab[i], bs, acc[i][j]);
        wmma::mma_sync(acc[i][j], ab[i], bb, acc[i][j]);
      }
    }
    __syncthreads();
  }
  #pragma unroll
  for (int i = 0; i < 2; ++i)
    #pragma unroll
    for (int j = 0; j < 4; ++j)
      store_fragment(acc[i][j], 16, 16, stage[warp], row0 + wr * 32 + i * 16,
                     col0 + wc * 64 + j * 16, m, N, G);
#endif
}

// Whether the current device has the tensor-core products (compute capability >= 8.0).
inline bool tensor_logits_available() {
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
    return false;
  return major >= 8;
}

}  // namespace cuda
}  // namespace mixscore
