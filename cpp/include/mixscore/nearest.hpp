// Exact k nearest training points (Euclidean), SCIENCE.md section 5.
//
// Same shape as the score engine: tiles of queries go to OpenMP threads, the training set is
// streamed tile by tile, and a GEMM-shaped stage (gemm_packed, float32 or float64) gives every
// squared distance approximately through the expansion about the training mean
//     |x - X_n|^2 ~ |x'|^2 - 2 x'.Xc_n + |Xc_n|^2,     x' = x - mu, Xc_n = X_n - mu,
// with a rigorous bound on its error. Only entries whose lower bound does not exceed the current
// k-th best exact distance are "candidates"; those are recomputed exactly from direct float64
// differences and kept in a running top-k ordered by (squared distance, index).
//
// Because the result is the top-k of the exact distances under that total order, it does not
// depend on the tiling, the number of threads, the batch split or the query order, and it is
// bit-identical to the NumPy reference, which sums the squared differences in the same fixed
// order (exact_lam in cpp/include/mixscore/exact.hpp).
#pragma once
#include <cstdint>

#include "mixscore/engine.hpp"  // StopFn, TrainSet

namespace mixscore {

struct NearestOptions {
  int num_threads = 0;  // 0: OpenMP default
};

// Optional counters (diagnostics; not part of the result).
struct NearestCounters {
  int64_t refined = 0;  // entries recomputed exactly from direct differences
};

// For each of the M queries x (M x D, row-major): the k nearest training points, ascending by
// (distance, index). dist (M x k) are sqrt of the exact float64 squared distances, idx (M x k)
// their indices. Requires 1 <= k <= N. Returns false if should_stop() asked to stop.
template <typename T>
bool nearest_search(const TrainSet<T>& train, const T* x, int64_t M, int64_t k, double* dist,
                    int64_t* idx, const NearestOptions& opt, const StopFn& should_stop,
                    NearestCounters* counters);

}  // namespace mixscore
