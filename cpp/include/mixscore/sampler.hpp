// Reverse-time integration with the exact empirical score, the whole loop in C++ (SCIENCE.md
// section 3). Every step is one call of the streaming engine for the denoiser plus an O(n D)
// update; the noise of sample i at step k is Philox(seed, first_sample + i, k), so the result
// does not depend on batch size, batch split or thread count.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>

#include "mixscore/engine.hpp"
#include "mixscore/hd.hpp"

namespace mixscore {

// Every sampler step, whatever the method, is linear in the states and denoisers it uses:
//   xe     = E_x x + E_h xh(x, t_a)                                  (Heun's predictor only)
//   x_next = A x + B xh(x, t_a) + Ce xe + Cb xh(xe, t_b) + S z,   z ~ N(0, I) by Philox
// with the seven coefficients of step k computed once in Python (python/mixscore/sampling/
// methods.py), so the C++ loop and the Python loop for user scores share one definition of
// each method and perform the same float64 operations in the same order.
// The naive sampler (generalization-through-variance paper, Prop. 4.1) replaces xh(x, t_a) at
// step k by the float64 mean of draws[k] training points drawn from w(x, t_a)
// (mixscore/draws.hpp: Philox key seed ^ kDrawsKey, row first_sample + i, steps k R ..).
enum Coef : int { kA = 0, kB, kS, kEx, kEh, kCe, kCb, kNumCoef };

struct SamplerPlan {
  const double* coef = nullptr;    // K x kNumCoef
  const double* alpha = nullptr;   // K + 1 grid values, t[0] = T > ... > t[K] = t_end
  const double* sigma2 = nullptr;  // K + 1
  int64_t K = 0;                   // number of steps
  bool predictor = false;          // Heun: evaluate xh at (xe, t_{k+1}) too
  uint64_t seed = 0;
  int64_t first_sample = 0;   // global index of row 0 (noise stream of each sample)
  const int64_t* rows = nullptr;  // n global indices instead (samples of one label), or null
  bool end_denoise = false;   // true: replace x(t_end) by the denoiser at t_end
  const int64_t* draws = nullptr;  // K posterior draws per step replacing xh (0: xh), or null
  const int64_t* save_steps = nullptr;  // increasing step numbers in [0, K] (0 = the start)
  int64_t n_save = 0;
  // The regularizers not folded into coef (python/mixscore/sampling/fold.py): after each
  // denoiser call at grid point j, per sample
  //   xh <- m xh + (1 - m) x / alpha[j] + shift_scale[j] shift,
  //   m = min(1, exp(log K(x) - eb_log_c[j]))  (Empirical Bayes: K the kernel sum of the
  //   mixture, or its normalized density when eb_density), shift the perturbation e.
  const double* eb_log_c = nullptr;     // K + 1, or null: no Empirical Bayes
  bool eb_density = false;
  const double* shift = nullptr;        // D, or null: no perturbation
  const double* shift_scale = nullptr;  // K + 1 (with shift)
};

// The largest |value| of data in T whose squared distances stay finite at dimension D (with
// a margin for sums of D terms): python/mixscore/_validation.check_magnitudes refuses data and
// queries beyond it, and every sampler loop (CPU, GPU, Python) stops at a step whose state
// leaves it, as it stops at NaN/Inf.
constexpr double kMaxAbsFloat32 = 1e18, kMaxAbsFloat64 = 1e150;
template <typename T>
MIXSCORE_HD inline double max_abs_value(int64_t D) {
  return (sizeof(T) == 4 ? kMaxAbsFloat32 : kMaxAbsFloat64) / std::sqrt(double(D));
}

// The per-sample part of the regularizers (SamplerPlan), one definition for the CPU loop and
// the GPU loop (cuda/sampler.cu). The Empirical Bayes factor m = min(1, K(x) / c) from
// log K = logpdf + to_kernel (to_kernel: 0 for density units, else log sum pi + (D/2)
// log(2 pi sigma^2)) and log c:
MIXSCORE_HD inline double eb_factor(double logpdf, double to_kernel, double log_c) {
  return std::exp(fmin(0.0, logpdf + to_kernel - log_c));
}
// and the regularized denoiser entry m xh + (1 - m) x / alpha:
MIXSCORE_HD inline double eb_denoiser(double m, double xh, double x, double alpha) {
  return m * xh + (1.0 - m) * (x / alpha);
}

struct SamplerStatus {
  bool finished = true;     // false: stopped by should_stop (Ctrl-C) or the callback
  int64_t bad_step = -1;    // >= 0: the step after which a state was NaN/Inf (loop stopped)
};

// Integrates x (n x D, in place) from t[0] to t[K]. saved (n_save x n x D) may be null when
// n_save = 0. on_steps(k) is called after step k (1-based count) every `every` steps and after
// the last; it returns true to stop.
template <typename T>
SamplerStatus run_sampler(const TrainSet<T>& train, T* x, int64_t n, T* saved,
                          const SamplerPlan& plan, const EngineOptions& opt,
                          const StopFn& should_stop,
                          const std::function<bool(int64_t)>& on_steps, int64_t every);

}  // namespace mixscore
