// The fused sampler loop (see mixscore/sampler.hpp): per step one or two engine calls for the
// denoiser and a linear update; the update is element-wise per sample, so any parallel split
// gives the same bits. Compiled with -ffp-contract=off: the Python loop performs the same
// float64 operations without fused multiply-adds.
#include "mixscore/sampler.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "mixscore/draws.hpp"
#include "mixscore/philox.hpp"
#include "mixscore/threads.hpp"

namespace mixscore {

namespace {

template <typename T>
struct Denoiser {
  const TrainSet<T>& train;
  const SamplerPlan& plan;
  const EngineOptions& opt;
  const StopFn& stop;
  int64_t n;
  std::vector<double> alpha, sigma2, logpdf;

  // xh = the denoiser at x and grid point j (the regularized one where the plan says so);
  // false if asked to stop.
  bool operator()(const T* x, int64_t j, T* xh) {
    std::fill(alpha.begin(), alpha.end(), plan.alpha[j]);
    std::fill(sigma2.begin(), sigma2.end(), plan.sigma2[j]);
    Queries<T> q;
    q.x = x;
    q.alpha = alpha.data();
    q.sigma2 = sigma2.data();
    q.M = n;
    Outputs<T> out;
    out.denoised = xh;
    if (plan.eb_log_c) {
      logpdf.resize(n);
      out.logpdf = logpdf.data();
    }
    if (!run_engine<T>(train, q, out, opt, stop)) return false;
    if (plan.eb_log_c || plan.shift) regularize(x, j, xh);
    return true;
  }

  // SamplerPlan's Empirical Bayes factor and perturbation (the log kernel sum from the
  // log-density: log K = logpdf + log sum pi + (D/2) log(2 pi sigma^2)).
  void regularize(const T* x, int64_t j, T* xh) const {
    const int64_t D = train.D;
    const double a = plan.alpha[j], log_c = plan.eb_log_c ? plan.eb_log_c[j] : 0.0;
    const double to_kernel = plan.eb_density ? 0.0
        : train.logw_sum + 0.5 * double(D) * (1.8378770664093453 + std::log(plan.sigma2[j]));
    const double g = plan.shift ? plan.shift_scale[j] : 0.0;
#pragma omp parallel for num_threads(thread_count(opt.num_threads)) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const double m = plan.eb_log_c ? eb_factor(logpdf[i], to_kernel, log_c) : 1.0;
      for (int64_t d = 0; d < D; ++d) {
        const int64_t e = i * D + d;
        double v = eb_denoiser(m, double(xh[e]), double(x[e]), a);
        if (plan.shift) v = v + g * plan.shift[d];
        xh[e] = T(v);
      }
    }
  }
};

// The naive estimator's denoiser: xh (n x D, float64) = the mean of R training points drawn
// from w(x, t) per sample (mixscore/draws.hpp), summed in draw order as NumPy's mean does.
template <typename T>
struct DrawsMean {
  const TrainSet<T>& train;
  const EngineOptions& opt;
  const StopFn& stop;
  int64_t n;
  std::vector<double> alpha, sigma2;
  std::vector<int64_t> rows, idx;

  bool operator()(const T* x, double alpha_t, double sigma2_t, int64_t R, uint64_t seed,
                  uint32_t first_step, double* xh) {
    std::fill(alpha.begin(), alpha.end(), alpha_t);
    std::fill(sigma2.begin(), sigma2.end(), sigma2_t);
    idx.resize(n * R);
    Queries<T> q;
    q.x = x;
    q.alpha = alpha.data();
    q.sigma2 = sigma2.data();
    q.M = n;
    DrawSpec spec;
    spec.R = R;
    spec.key = seed ^ kDrawsKey;
    spec.rows = rows.data();
    spec.first_step = first_step;
    if (!posterior_draws<T>(train, q, spec, idx.data(), opt, stop)) return false;
    const int64_t D = train.D;
#pragma omp parallel for num_threads(thread_count(opt.num_threads)) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      double* out = xh + i * D;
      const T* X0 = train.X + idx[i * R] * D;
      for (int64_t d = 0; d < D; ++d) out[d] = double(X0[d]);
      for (int64_t r = 1; r < R; ++r) {
        const T* Xr = train.X + idx[i * R + r] * D;
        for (int64_t d = 0; d < D; ++d) out[d] += double(Xr[d]);
      }
      for (int64_t d = 0; d < D; ++d) out[d] /= double(R);
    }
    return true;
  }
};

int threads_for(const EngineOptions& opt) {
  return thread_count(opt.num_threads);
}

}  // namespace

template <typename T>
SamplerStatus run_sampler(const TrainSet<T>& train, T* x, int64_t n, T* saved,
                          const SamplerPlan& plan, const EngineOptions& opt,
                          const StopFn& should_stop,
                          const std::function<bool(int64_t)>& on_steps, int64_t every) {
  const int64_t D = train.D, nD = n * D;
  Denoiser<T> denoise{train, plan, opt, should_stop, n, std::vector<double>(n),
                      std::vector<double>(n), {}};
  std::vector<T> xh(nD), xe(plan.predictor ? nD : 0), xhb(plan.predictor ? nD : 0);
  bool naive = false;  // any step with posterior draws
  for (int64_t k = 0; plan.draws && k < plan.K; ++k) naive = naive || plan.draws[k] > 0;
  DrawsMean<T> draws_mean{train, opt, should_stop, n,
                          std::vector<double>(naive ? n : 0), std::vector<double>(naive ? n : 0),
                          std::vector<int64_t>(naive ? n : 0), {}};
  for (int64_t i = 0; naive && i < n; ++i)
    draws_mean.rows[i] = plan.rows ? plan.rows[i] : plan.first_sample + i;
  std::vector<double> xhd(naive ? nD : 0);  // the naive step's float64 denoiser
  SamplerStatus status;
  int64_t next_save = 0;
  auto save = [&](int64_t step) {
    while (next_save < plan.n_save && plan.save_steps[next_save] == step) {
      std::memcpy(saved + next_save * nD, x, sizeof(T) * nD);
      ++next_save;
    }
  };
  save(0);
  const int nthreads = threads_for(opt);
  for (int64_t k = 0; k < plan.K; ++k) {
    const double* c = plan.coef + k * kNumCoef;
    const int64_t R = plan.draws ? plan.draws[k] : 0;
    if (R > 0) {
      if (!draws_mean(x, plan.alpha[k], plan.sigma2[k], R, plan.seed, uint32_t(k * R),
                      xhd.data()))
        return {false, -1};
    } else if (!denoise(x, k, xh.data())) {
      return {false, -1};
    }
    if (plan.predictor) {
#pragma omp parallel for num_threads(nthreads) schedule(static)
      for (int64_t e = 0; e < nD; ++e)
        xe[e] = T(c[kEx] * double(x[e]) + c[kEh] * double(xh[e]));
      if (!denoise(xe.data(), k + 1, xhb.data()))
        return {false, -1};
    }
    const bool noisy = c[kS] != 0.0;
    const double limit = max_abs_value<T>(D);
    int bad = 0;
#pragma omp parallel num_threads(nthreads) reduction(| : bad)
    {
      constexpr int64_t kBatch = 64;  // samples whose noise is drawn together (SIMD)
      std::vector<double> z(noisy ? kBatch * D : 0);
#pragma omp for schedule(static)
      for (int64_t i0 = 0; i0 < n; i0 += kBatch) {
        const int64_t i1 = std::min(n, i0 + kBatch);
        if (noisy && plan.rows)  // each sample its own stream (not consecutive)
          for (int64_t i = i0; i < i1; ++i)
            fill_normals(plan.seed, plan.rows[i], 1, uint32_t(k), D, z.data() + (i - i0) * D);
        else if (noisy)
          fill_normals(plan.seed, plan.first_sample + i0, i1 - i0, uint32_t(k), D, z.data());
        for (int64_t e = i0 * D; e < i1 * D; ++e) {
          double v = c[kA] * double(x[e]) + c[kB] * (R > 0 ? xhd[e] : double(xh[e]));
          if (plan.predictor) v = v + c[kCe] * double(xe[e]) + c[kCb] * double(xhb[e]);
          if (noisy) v = v + c[kS] * z[e - i0 * D];
          x[e] = T(v);
          bad |= !(std::fabs(double(x[e])) <= limit);  // NaN/Inf or beyond the engine's range
        }
      }
    }
    if (bad) return {true, k};
    save(k + 1);
    const bool last = k + 1 == plan.K;
    if (on_steps && ((k + 1) % every == 0 || last) && on_steps(k + 1)) return {false, -1};
  }
  if (plan.end_denoise) {
    if (!denoise(x, plan.K, xh.data())) return {false, -1};
    std::memcpy(x, xh.data(), sizeof(T) * nD);
  }
  return status;
}

template SamplerStatus run_sampler<float>(const TrainSet<float>&, float*, int64_t, float*,
                                          const SamplerPlan&, const EngineOptions&,
                                          const StopFn&, const std::function<bool(int64_t)>&,
                                          int64_t);
template SamplerStatus run_sampler<double>(const TrainSet<double>&, double*, int64_t, double*,
                                           const SamplerPlan&, const EngineOptions&,
                                           const StopFn&, const std::function<bool(int64_t)>&,
                                           int64_t);

}  // namespace mixscore
