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

// One BK-deep slab of an operand (R rows from r0, k from k0), 4 elements per thread: fetched
// into registers, then put into shared memory as sh[k][r] (transposed: the inner loop reads a
// row of sh per k). Split in two so the next slab's global loads overlap this slab's FMAs.
template <typename Acc, int R>
struct Slab {
  static constexpr int kPer = R * TileShape::BK / TileShape::kThreads;
  static_assert(kPer == 4, "the mapping below assumes 4 elements per thread");
  Acc v[kPer];

  template <class Load>
  __device__ static void at(int j, int* r, int* k) {
    const int t = threadIdx.x;
    if (Load::kKContiguous) {  // consecutive threads walk k first (rows are K-contiguous)
      *r = t / 2;
      *k = (t % 2) * 4 + j;
    } else {  // consecutive threads walk rows (k is the slow index in memory)
      *k = t / 32;
      *r = (t % 32) * 4 + j;
    }
  }
  template <class Load>
  __device__ void fetch(const Load& ld, int64_t r0, int64_t k0) {
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      int r, k;
      at<Load>(j, &r, &k);
      v[j] = ld(r0 + r, k0 + k);
    }
  }
  template <class Load>
  __device__ void put(Acc (*sh)[R]) const {
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      int r, k;
      at<Load>(j, &r, &k);
      sh[k][r] = v[j];
    }
  }
};

template <typename Acc, int R, class Load>
__device__ inline void load_slab(const Load& ld, int64_t r0, int64_t k0, Acc (*sh)[R]) {
  Slab<Acc, R> s;
  s.fetch(ld, r0, k0);
  s.template put<Load>(sh);
}

// The per-thread register tile: rows (columns) in two groups of 4, q * 64 + t * 4 + i for
// q = 0, 1, where t is the thread's row (column) index in the 16 x 16 thread grid. So a warp's
// 16-byte shared-memory reads of a k row cover 128 contiguous bytes per group of 8 threads:
// no bank conflicts, and 4 vector loads feed 64 FMAs.
__device__ inline int tile_row(int i, int t) { return (i / 4) * 64 + t * 4 + i % 4; }

template <typename Acc>
__device__ inline void load4(const Acc* p, Acc* v) {  // p 16-byte aligned
  if constexpr (sizeof(Acc) == 4) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  } else {
    const double2 q0 = reinterpret_cast<const double2*>(p)[0];
    const double2 q1 = reinterpret_cast<const double2*>(p)[1];
    v[0] = q0.x, v[1] = q0.y, v[2] = q1.x, v[3] = q1.y;
  }
}

// The block's product over k in [k_begin, k_end) (whole slabs; the loaders give 0 past the
// operand's end), added into acc: TM x TN per thread, entry (i, j) at row tile_row(i, ty) and
// column tile_row(j, tx) of the block tile. Two shared-memory stages: the next slab is fetched
// into registers before this one's FMAs and put into the other stage after them, one barrier
// per slab. Every thread of the block must call it (barriers).
template <typename Acc, class LoadA, class LoadB>
__device__ inline void tile_product(const LoadA& la, const LoadB& lb, int64_t row0,
                                    int64_t col0, int64_t k_begin, int64_t k_end,
                                    Acc (&acc)[TileShape::TM][TileShape::TN]) {
  constexpr int BM = TileShape::BM, BN = TileShape::BN, BK = TileShape::BK;
  constexpr int TM = TileShape::TM, TN = TileShape::TN;
  static_assert(TM == 8 && TN == 8 && BM == 128 && BN == 128, "tile_row assumes 8 of 16 x 16");
  __shared__ __align__(16) Acc As[2][BK][BM];
  __shared__ __align__(16) Acc Bs[2][BK][BN];
  const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
  if (k_begin >= k_end) return;
  Slab<Acc, BM> sa;
  Slab<Acc, BN> sb;
  sa.fetch(la, row0, k_begin);
  sb.fetch(lb, col0, k_begin);
  sa.template put<LoadA>(As[0]);
  sb.template put<LoadB>(Bs[0]);
  __syncthreads();
  int stage = 0;
  for (int64_t k0 = k_begin; k0 < k_end; k0 += BK) {
    const bool more = k0 + BK < k_end;
    if (more) {
      sa.fetch(la, row0, k0 + BK);
      sb.fetch(lb, col0, k0 + BK);
    }
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      Acc a[TM], b[TN];
      load4(&As[stage][k][ty * 4], a);
      load4(&As[stage][k][64 + ty * 4], a + 4);
      load4(&Bs[stage][k][tx * 4], b);
      load4(&Bs[stage][k][64 + tx * 4], b + 4);
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
    }
    if (more) {  // the other stage: every thread finished reading it before the last barrier
      sa.template put<LoadA>(As[stage ^ 1]);
      sb.template put<LoadB>(Bs[stage ^ 1]);
    }
    __syncthreads();
    stage ^= 1;
  }
}

// A zeroed per-thread tile.
template <typename V>
__device__ inline void zero_tile(V (&acc)[TileShape::TM][TileShape::TN]) {
  for (auto& row : acc)
    for (auto& v : row) v = V(0);
}

// Write the thread's tile (entry (i, j) at row row0 + tile_row(i, ty), column col0 +
// tile_row(j, tx), as tile_product lays it out) to out[r * ld + c] for r < rows, c < cols.
template <typename V, typename Out>
__device__ inline void store_tile(const V (&acc)[TileShape::TM][TileShape::TN], int64_t row0,
                                  int64_t col0, int64_t rows, int64_t cols, int64_t ld,
                                  Out* out) {
  constexpr int TM = TileShape::TM, TN = TileShape::TN, BN = TileShape::BN;
  const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t r = row0 + tile_row(i, ty);
    if (r >= rows) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t c = col0 + tile_row(j, tx);
      if (c < cols) out[r * ld + c] = Out(acc[i][j]);
    }
  }
}

}  // namespace cuda
}  // namespace mixscore
