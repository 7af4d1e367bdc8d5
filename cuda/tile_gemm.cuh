// The GEMM tile of the GPU driver: C (BM x BN) = sum_k A(i, k) B(j, k) over k < K for one
// block, SIMT FMAs in Acc (float: true float32 products, never TF32; double: the float64
// product, exact for float32 inputs), register-blocked TM x TN per thread. Both products of
// the posterior pass use it (posterior.cu):
//   the logits product   G = q . p_n         A = shifted queries, B = prepared rows (K = D)
//   the weighted sums    S1 = W (X - mu)     A = weights, B = centred rows          (K = N)
// Operands come through small loader structs (element (row, k), zero outside), so the same
// tile serves both layouts; `kKContiguous` picks the coalesced mapping of threads to elements.
// The k loop visits k in a fixed order, so every entry's sum is the same for any launch shape.
#pragma once
#include <cstdint>

namespace mixscore {
namespace cuda {

struct TileShape {
  static constexpr int BM = 128, BN = 128, BK = 8;  // block tile, k slab
  static constexpr int TM = 8, TN = 8;              // per-thread register tile
  static constexpr int kThreads = (BM / TM) * (BN / TN);  // 256
};

// Load one BK-deep slab of an operand (R rows from r0, k from k0) into shared memory as
// sh[k][r] (transposed: the inner loop reads a row of sh per k). 4 elements per thread.
template <typename Acc, int R, class Load>
__device__ inline void load_slab(const Load& ld, int64_t r0, int64_t k0, Acc (*sh)[R]) {
  constexpr int BK = TileShape::BK, per = R * BK / TileShape::kThreads;
  static_assert(per == 4, "the mapping below assumes 4 elements per thread");
  const int t = threadIdx.x;
#pragma unroll
  for (int j = 0; j < per; ++j) {
    int r, k;
    if (Load::kKContiguous) {  // consecutive threads walk k first (rows are K-contiguous)
      r = t / 2;
      k = (t % 2) * 4 + j;
    } else {  // consecutive threads walk rows (k is the slow index in memory)
      k = t / 32;
      r = (t % 32) * 4 + j;
    }
    sh[k][r] = ld(r0 + r, k0 + k);
  }
}

// The block's product over k in [k_begin, k_end) (whole slabs; the loaders give 0 past the
// operand's end), added into acc: TM x TN per thread, rows ty * TM + i and columns
// tx * TN + j of the block tile. Every thread of the block must call it (barriers).
template <typename Acc, class LoadA, class LoadB>
__device__ inline void tile_product(const LoadA& la, const LoadB& lb, int64_t row0,
                                    int64_t col0, int64_t k_begin, int64_t k_end,
                                    Acc (&acc)[TileShape::TM][TileShape::TN]) {
  constexpr int BM = TileShape::BM, BN = TileShape::BN, BK = TileShape::BK;
  constexpr int TM = TileShape::TM, TN = TileShape::TN;
  __shared__ Acc As[BK][BM];
  __shared__ Acc Bs[BK][BN];
  const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
  for (int64_t k0 = k_begin; k0 < k_end; k0 += BK) {
    load_slab<Acc, BM>(la, row0, k0, As);
    load_slab<Acc, BN>(lb, col0, k0, Bs);
    __syncthreads();
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      Acc a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) a[i] = As[k][ty * TM + i];
#pragma unroll
      for (int j = 0; j < TN; ++j) b[j] = Bs[k][tx * TN + j];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
}

// A zeroed per-thread tile.
template <typename V>
__device__ inline void zero_tile(V (&acc)[TileShape::TM][TileShape::TN]) {
  for (auto& row : acc)
    for (auto& v : row) v = V(0);
}

// Write the thread's tile (rows row0 + ty * TM + i, columns col0 + tx * TN + j of the block
// tile, as tile_product lays it out) to out[r * ld + c] for r < rows and c < cols.
template <typename V, typename Out>
__device__ inline void store_tile(const V (&acc)[TileShape::TM][TileShape::TN], int64_t row0,
                                  int64_t col0, int64_t rows, int64_t cols, int64_t ld,
                                  Out* out) {
  constexpr int TM = TileShape::TM, TN = TileShape::TN, BN = TileShape::BN;
  const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
  for (int i = 0; i < TM; ++i) {
    const int64_t r = row0 + ty * TM + i;
    if (r >= rows) break;
    for (int j = 0; j < TN; ++j) {
      const int64_t c = col0 + tx * TN + j;
      if (c < cols) out[r * ld + c] = Out(acc[i][j]);
    }
  }
}

}  // namespace cuda
}  // namespace mixscore
