// One prepared training set, built once in C++ and shared by the statistics, the nearest
// search and the fused sampler: the training mean mu (float64), the norms |Xc_n|^2 and |Xc_n|
// in float64 of the centred rows rounded to T, Xc_n = T(X_n - mu), the tiles of Xc packed once
// for the logit GEMM (per instruction set, on first use; no other N x D copy: the weighted-sum
// GEMM centres the rows it needs with the same rounding), the log-weights and the
// global log-weight sum, the direct path's k-d layout for D < kDirectMaxD, and for shards a
// global row offset and the global number of points.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <vector>

#include <omp.h>

#include "mixscore/aligned.hpp"
#include "mixscore/threads.hpp"
#include "mixscore/direct_layout.hpp"
#include "mixscore/engine.hpp"

namespace mixscore {

// Elements of T in the packed tiles: whole tiles of kTrainTile rows.
inline int64_t packed_size(int64_t N, int64_t D) {
  return (N + kTrainTile - 1) / kTrainTile * kTrainTile * D;
}

// The variant in use (dispatch.cpp) and its packing of the centred rows T(X - mu) into the
// logit GEMM's panels: tile t at out + t * kTrainTile * D.
int isa_index();
template <typename T>
void pack_train_tiles(const T* X, const double* mu, int64_t N, int64_t D, T* out,
                      int num_threads, double* norm2);

template <typename T>
class Prepared {
 public:
  // X (N x D, row-major) must outlive this object. logw: N log-weights or nullptr. global_n:
  // 0 for N. logw_sum: log sum pi over all shards; NaN to take this shard's.
  Prepared(const T* X, int64_t N, int64_t D, const double* logw, int64_t row_offset,
           int64_t global_n, double logw_sum, int num_threads)
      : X_(X), N_(N), D_(D), row_offset_(row_offset), global_n_(global_n > 0 ? global_n : N),
        threads_(thread_count(num_threads)) {
    if (N < 1 || D < 1) throw std::invalid_argument("train must have at least one row and column");
    if (global_n != 0 && global_n < N)
      throw std::invalid_argument("global_n must be 0 or at least N = " + std::to_string(N) +
                                  ", got " + std::to_string(global_n));
    if (row_offset < 0)
      throw std::invalid_argument("row_offset must be >= 0, got " + std::to_string(row_offset));
    if (logw) logw_.assign(logw, logw + N);
    centre();
    logw_sum_ = std::isnan(logw_sum) ? local_logw_sum() : logw_sum;
    if (D < kDirectMaxD) direct_.emplace(X, N, D, logw);
    packed_for(isa_index());
  }

  int64_t N() const { return N_; }
  int64_t D() const { return D_; }
  int64_t row_offset() const { return row_offset_; }
  int64_t global_n() const { return global_n_; }
  double logw_sum() const { return logw_sum_; }
  const std::vector<double>& mu() const { return mu_; }
  bool weighted() const { return !logw_.empty(); }

  // The view the engine reads, with the tiles packed for the instruction set in use.
  TrainSet<T> view() const {
    TrainSet<T> tr;
    tr.X = X_;
    tr.packed = packed_for(isa_index());
    tr.norm2c = norm2c_.data();
    tr.normc = normc_.data();
    tr.logw = logw_.empty() ? nullptr : logw_.data();
    tr.mu = mu_.data();
    if (direct_) {
      tr.XT = direct_->XT.data();
      tr.order = direct_->order.data();
      tr.logw_tiled = logw_.empty() ? nullptr : direct_->logw.data();
      tr.box = direct_->box.data();
    }
    tr.N = N_;
    tr.D = D_;
    tr.row_offset = row_offset_;
    tr.global_n = global_n_;
    tr.logw_sum = logw_sum_;
    return tr;
  }

 private:
  // mu in float64 summed in a fixed order (chunks of rows combined in order, so any thread
  // count gives the same bits); the norms of the centred rounded rows come with the first
  // packing (packed_for).
  void centre() {
    constexpr int64_t kChunk = 4096;
    const int64_t N = N_, D = D_, nchunks = (N + kChunk - 1) / kChunk;
    std::vector<double> part(nchunks * D, 0.0);
#pragma omp parallel for schedule(static) num_threads(threads_)
    for (int64_t c = 0; c < nchunks; ++c) {
      double* s = &part[c * D];
      for (int64_t n = c * kChunk; n < std::min(N, (c + 1) * kChunk); ++n)
        for (int64_t d = 0; d < D; ++d) s[d] += double(X_[n * D + d]);
    }
    mu_.assign(D, 0.0);
    for (int64_t c = 0; c < nchunks; ++c)
      for (int64_t d = 0; d < D; ++d) mu_[d] += part[c * D + d];
    for (int64_t d = 0; d < D; ++d) mu_[d] /= double(N);
  }

  double local_logw_sum() const {
    if (logw_.empty()) return std::log(double(global_n_));
    double m = -std::numeric_limits<double>::infinity();
    for (double v : logw_) m = std::max(m, v);
    double acc = 0.0;
    for (double v : logw_) acc += std::exp(v - m);
    return m + std::log(acc);
  }

  const T* packed_for(int isa) const {
    std::lock_guard<std::mutex> lock(pack_mutex_);
    AlignedBuffer<T>& p = packed_[isa];
    if (p.empty()) {
      p.resize(packed_size(N_, D_));  // not zeroed: the packing writes every panel read
      const bool norms = norm2c_.empty();  // the first packing computes them (same bits)
      if (norms) norm2c_.resize(N_);
      pack_train_tiles<T>(X_, mu_.data(), N_, D_, p.data(), threads_,
                          norms ? norm2c_.data() : nullptr);
      if (norms) {
        normc_.resize(N_);
        for (int64_t n = 0; n < N_; ++n) normc_[n] = std::sqrt(norm2c_[n]);
      }
    }
    return p.data();
  }

  const T* X_;
  int64_t N_, D_, row_offset_, global_n_;
  int threads_;
  double logw_sum_ = 0.0;
  std::vector<double> mu_, logw_;
  mutable std::vector<double> norm2c_, normc_;  // filled by the first packing
  std::optional<DirectLayout> direct_;
  mutable std::mutex pack_mutex_;
  mutable std::array<AlignedBuffer<T>, 3> packed_;
};

}  // namespace mixscore
