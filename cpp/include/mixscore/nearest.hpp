// Exact k nearest training points (Euclidean), SCIENCE.md section 5.
//
// Same shape as the score engine: tiles of queries go to OpenMP threads, the training set is
// streamed tile by tile, and a GEMM-shaped stage (micro_gemm, float32 or float64) gives every
// squared distance approximately through the expansion about the training mean
//     |x - X_n|^2 ~ |x'|^2 - 2 x'.Xc_n + |Xc_n|^2,     x' = x - mu, Xc_n = X_n - mu,
// with a rigorous bound on its error. Only entries whose lower bound does not exceed the current
// k-th best exact distance are "candidates"; those are recomputed exactly from direct float64
// differences and kept in a running top-k ordered by (squared distance, index).
//
// Because the result is the top-k of the exact distances under that total order, it does not
// depend on the tiling, the number of threads, the batch split or the query order, and it is
// bit-identical to the NumPy reference, which sums the squared differences in the same fixed
// order (see exact_sq_distance in cpp/src/nearest_impl.hpp).
#pragma once
#include <cstdint>

#include "mixscore/engine.hpp"  // StopFn

namespace mixscore {

// Training points per tile of the packed layout (the GEMM's column block), and the row stride
// of a packed tile: 33 cache lines rather than 32, so that the rows of a tile do not all fall
// into the same few L1 sets (a power-of-two stride made the GEMM's B slice thrash L1).
constexpr int64_t kNearestTrainTile = 512;
constexpr int64_t kNearestTrainLd = kNearestTrainTile + 16;

// Training set prepared once by nearest_pack.
template <typename T>
struct NearestTrain {
  const T* X = nullptr;         // N x D original data, row-major (the exact stage reads this)
  const T* packed = nullptr;    // ceil(N / kNearestTrainTile) tiles of D rows of
                                // kNearestTrainLd: centred data X - mu rounded to T,
                                // transposed, zero padded
  const double* norm2 = nullptr;  // |Xc_n|^2 of the rounded centred rows (N)
  const double* norm = nullptr;   // |Xc_n| (N)
  const double* mu = nullptr;     // D (any shift is exact; the mean reduces cancellation)
  int64_t N = 0, D = 0;
};

struct NearestOptions {
  int num_threads = 0;  // 0: OpenMP default
};

// Optional counters (diagnostics; not part of the result).
struct NearestCounters {
  int64_t refined = 0;  // entries recomputed exactly from direct differences
};

// Size of the packed buffer in elements of T.
inline int64_t nearest_packed_size(int64_t N, int64_t D) {
  return (N + kNearestTrainTile - 1) / kNearestTrainTile * D * kNearestTrainLd;
}

// Fills packed (nearest_packed_size(N, D) elements), norm2 and norm (N each) from X and mu.
template <typename T>
void nearest_pack(const T* X, int64_t N, int64_t D, const double* mu, T* packed, double* norm2,
                  double* norm, int num_threads);

// For each of the M queries x (M x D, row-major): the k nearest training points, ascending by
// (distance, index). dist (M x k) are sqrt of the exact float64 squared distances, idx (M x k)
// their indices. Requires 1 <= k <= N. Returns false if should_stop() asked to stop.
template <typename T>
bool nearest_search(const NearestTrain<T>& train, const T* x, int64_t M, int64_t k, double* dist,
                    int64_t* idx, const NearestOptions& opt, const StopFn& should_stop,
                    NearestCounters* counters);

}  // namespace mixscore
