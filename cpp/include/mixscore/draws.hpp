// Posterior draws: for each query x at (alpha, sigma^2), R training indices drawn independently
// from w_n(x, t) = softmax_n(log pi_n - |x - alpha X_n|^2 / (2 sigma^2)) by exponential jumps
// (cpp/src/draws.hpp), the naive estimator of the generalization-through-variance paper
// (Prop. 4.1). Draw r of query i uses the Philox blocks of counter (j, first_step + r,
// rows[i]) for its replacements j = 0, 1, ...: the streams of the NumPy reference
// (python/mixscore/covariance.py, posterior_draws).
#pragma once
#include <cstdint>

#include "mixscore/engine.hpp"

namespace mixscore {

// XORed into the seed for the draws' Philox key (python/mixscore/covariance.py: DRAWS_KEY).
constexpr uint64_t kDrawsKey = 0x9E3779B97F4A7C15ull;

struct DrawSpec {
  int64_t R = 1;               // draws per query
  uint64_t key = 0;            // Philox key: seed ^ kDrawsKey
  const int64_t* rows = nullptr;  // M stream row ids (samplers: the global sample index)
  uint32_t first_step = 0;     // counter word of draw 0 (draw r: first_step + r)
};

// out (M x R): local indices into the training set. Returns false if should_stop() asked to
// stop (out is then incomplete).
template <typename T>
bool posterior_draws(const TrainSet<T>& train, const Queries<T>& q, const DrawSpec& spec,
                     int64_t* out, const EngineOptions& opt, const StopFn& should_stop);

}  // namespace mixscore
