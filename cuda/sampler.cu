// The fused sampler loop on the GPU (SCIENCE.md section 3; the CPU loop is cpp/src/sampler.cpp
// and mixscore/sampler.hpp defines the plan). The states stay on the device and the host only
// queues launches: per denoiser call a set-up kernel (q = fl_T(x - alpha mu), |x - alpha mu|^2),
// the posterior pass (posterior.cu) and a finalizer (the posterior mean, rounded to T, with the
// plan's Empirical Bayes factor and perturbation); per step one element-wise kernel that draws
// the Philox noise of (seed, sample, step) in place. The naive sampler takes the draws kernel
// (draws.cu) and the float64 mean of the drawn rows for the denoiser, the effective sampler
// the covariance noise (cov_noise.cu) for the normals. Compiled with --fmad=false: the steps are
// the CPU loop's float64 operations in its order, so given the same denoiser values the states
// are the same bits. One step stays queued while the host checks the one before (its NaN/Inf
// flag, Ctrl-C, the progress callback), so the GPU does not wait for the host between steps.
#include <cuda_runtime.h>

#include <cmath>
#include <vector>

#include "kernels.cuh"
#include "launch.hpp"
#include "mixscore/draws.hpp"  // kDrawsKey
#include "mixscore/philox.hpp"

namespace mixscore {
namespace cuda {

namespace {

constexpr double kLog2Pi = 1.8378770664093453;

// A piece of the scratch buffer of `count` elements, 256-byte aligned (base null: sizing only).
template <typename U>
U* carve(char* base, int64_t* offset, int64_t count) {
  U* p = base ? reinterpret_cast<U*>(base + *offset) : nullptr;
  *offset += (int64_t(sizeof(U)) * count + 255) / 256 * 256;
  return p;
}

// The loop's device arrays for n samples: the pass's per-query inputs and outputs, the
// denoisers (in T, as the CPU loop keeps them), Heun's predictor, the naive sampler's draws and
// their float64 mean (or the effective sampler's float64 posterior mean) and the effective
// sampler's noise, two NaN/Inf flags.
template <typename T>
struct Scratch {
  T *q, *xh, *xe, *xhb;
  double *alpha, *sigma2, *xs2, *lam_min, *s0, *sum_w2, *s2, *s0l, *s2l, *s1, *s1l, *xhd, *noise;
  int64_t *best, *draws;
  int* bad;

  // Lays the arrays out from base for at most max_draws draws per step; returns the bytes.
  int64_t layout(void* base_, int64_t n, int64_t D, bool predictor, int64_t max_draws,
                 bool posterior_noise) {
    char* base = static_cast<char*>(base_);
    int64_t o = 0;
    q = carve<T>(base, &o, n * D);
    xh = carve<T>(base, &o, n * D);
    xe = carve<T>(base, &o, predictor ? n * D : 0);
    xhb = carve<T>(base, &o, predictor ? n * D : 0);
    for (double** p : {&alpha, &sigma2, &xs2, &lam_min, &s0, &sum_w2, &s2, &s0l, &s2l})
      *p = carve<double>(base, &o, n);
    s1 = carve<double>(base, &o, n * D);
    s1l = carve<double>(base, &o, n * D);
    xhd = carve<double>(base, &o, max_draws > 0 || posterior_noise ? n * D : 0);
    noise = carve<double>(base, &o, posterior_noise ? n * D : 0);
    best = carve<int64_t>(base, &o, n);
    draws = carve<int64_t>(base, &o, n * max_draws);
    bad = carve<int>(base, &o, 2);
    return o;
  }
};

// Per query (one block): q = fl_T(x - alpha mu), |x - alpha mu|^2 (float64, fixed tree order),
// and the per-query noise level the pass reads.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    setup_kernel(const T* x, int64_t D, const double* mu, double alpha, double sigma2, T* q,
                 double* xs2, double* alphas, double* sigma2s) {
  __shared__ double sh[kThreads];
  const int64_t i = blockIdx.x;
  double s = 0.0;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    const double v = double(x[i * D + d]) - alpha * mu[d];
    q[i * D + d] = T(v);
    s += v * v;
  }
  s = block_sum(s, sh);
  if (threadIdx.x == 0) {
    xs2[i] = s;
    alphas[i] = alpha;
    sigma2s[i] = sigma2;
  }
}

// What the finalizer applies at one grid point (SamplerPlan's per-sample regularizers).
struct Finish {
  double alpha, sigma2;
  bool eb;                // Empirical Bayes: factor m from the log-density
  double log_c, to_kernel, log_weight_sum;
  const double* shift;    // (D,) device, or null
  double shift_scale;
  double* mean;           // (n, D): the float64 posterior mean too, or null
};

// Per query (one block): xh = fl_T(X_best + s1 / s0), the sums of the pass moved to the centre
// X_best as the cuda backend does (python/mixscore/backends/cuda.py, _centre_sums), then
// xh <- fl_T(m xh + (1 - m) x / alpha + g e) where the plan has regularizers.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    denoise_kernel(PosteriorArgs<T> a, Finish f, T* xh) {
  const int64_t i = blockIdx.x, D = a.D;
  const T* Xb = a.train + a.best[i] * D;
  const double s0 = a.s0[i], s0l = a.s0_light[i];
  double m = 1.0;
  if (f.eb) {  // the engine's log-density (cpp/src/posterior.hpp)
    const double inv = fmin(0.5 / f.sigma2, 1e300);
    const double logpdf = -a.lam_min[i] * inv + log(s0) - f.log_weight_sum -
                          0.5 * double(D) * (kLog2Pi + log(f.sigma2));
    m = eb_factor(logpdf, f.to_kernel, f.log_c);
  }
  const bool regularize = f.eb || f.shift;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    const int64_t e = i * D + d;
    const double c = double(Xb[d]);
    const double s1 = a.s1[e] + (a.s1_light[e] - s0l * (c - a.mu[d]));
    const double mean = c + s1 / s0;
    if (f.mean) f.mean[e] = mean;
    T v = T(mean);
    if (regularize) {
      double r = eb_denoiser(m, double(v), double(a.x[e]), f.alpha);
      if (f.shift) r = r + f.shift_scale * f.shift[d];
      v = T(r);
    }
    xh[e] = v;
  }
}

// The naive sampler's denoiser (one thread per sample and dimension): the float64 mean of the
// R drawn training points, summed in draw order as the CPU loop does.
template <typename T>
__global__ void draws_mean_kernel(const T* train, const int64_t* idx, int64_t n, int64_t D,
                                  int64_t R, double* xhd) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= n * D) return;
  const int64_t i = e / D, d = e % D;
  double v = 0.0;
  for (int64_t r = 0; r < R; ++r) {
    const int64_t n = idx[i * R + r];
    if (n < 0) {  // no draw: a NaN state (the step is flagged)
      v = NAN;
      break;
    }
    v = r == 0 ? double(train[n * D + d]) : v + double(train[n * D + d]);
  }
  xhd[e] = v / double(R);
}

struct StepCoef {
  double c[kNumCoef];
};

// Heun's predictor xe = fl_T(Ex x + Eh xh), element-wise.
template <typename T>
__global__ void predict_kernel(const T* x, const T* xh, int64_t count, StepCoef k, T* xe) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e < count) xe[e] = T(k.c[kEx] * double(x[e]) + k.c[kEh] * double(xh[e]));
}

// One step, a thread per sample and pair of dimensions (the two normals of one Philox block):
// x = fl_T(A x + B xh [+ Ce xe + Cb xhb] [+ S z]), xh the float64 xhd where the naive sampler
// drew (else the denoiser in T), z the effective sampler's noise where given (else the
// Philox normals); bad = 1 if a state is NaN/Inf or beyond max_abs_value (sampler.hpp).
template <typename T>
__global__ void step_kernel(T* x, const T* xh, const double* xhd, const T* xe, const T* xhb,
                            const double* noise, int64_t n, int64_t D, const int64_t* rows,
                            uint64_t seed, uint32_t step, StepCoef k, int* bad) {
  const int64_t pairs = (D + 1) / 2;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n * pairs) return;
  const int64_t i = t / pairs, j = t % pairs;
  const double* c = k.c;
  const bool noisy = c[kS] != 0.0;
  double z[2] = {0.0, 0.0};
  const double limit = max_abs_value<T>(D);
  if (noisy && !noise)
    philox_normal_pair(seed, uint64_t(rows[i]), step, uint32_t(j), &z[0], &z[1]);
  for (int r = 0; r < 2 && 2 * j + r < D; ++r) {
    const int64_t e = i * D + 2 * j + r;
    double v = c[kA] * double(x[e]) + c[kB] * (xhd ? xhd[e] : double(xh[e]));
    if (xe) v = v + c[kCe] * double(xe[e]) + c[kCb] * double(xhb[e]);
    if (noisy) v = v + c[kS] * (noise ? noise[e] : z[r]);
    x[e] = T(v);
    if (!(fabs(double(x[e])) <= limit)) *bad = 1;  // NaN/Inf or beyond: every writer writes 1
  }
}

unsigned blocks_for(int64_t count) {
  return unsigned((count + kThreads - 1) / kThreads);
}

// The host side of the loop: two events (the host sleeps on them rather than spinning) and
// two pinned flags, one per step in flight, from a per-thread pool (a callback may run another
// loop on this thread); pinned memory is never freed (freeing it synchronizes the whole
// device). The stream is drained on every exit, so no queued kernel outlives the caller's
// buffers.
struct InFlight {
  struct Event {
    cudaEvent_t e = nullptr;
    Event() {
      check(cudaEventCreateWithFlags(&e, cudaEventBlockingSync | cudaEventDisableTiming),
            "creating an event");
    }
    ~Event() { cudaEventDestroy(e); }
  };
  cudaStream_t st;
  Event done[2];
  int* flag;  // pinned: the NaN/Inf flags of the last two steps

  explicit InFlight(cudaStream_t s) : st(s) {
    std::vector<int*>& free = pool();
    if (free.empty()) {
      int* f = nullptr;
      check(cudaMallocHost(reinterpret_cast<void**>(&f), 2 * sizeof(int)), "pinned flags");
      free.push_back(f);
    }
    flag = free.back();
    free.pop_back();
  }
  ~InFlight() {
    cudaStreamSynchronize(st);
    pool().push_back(flag);
  }

  static std::vector<int*>& pool() {
    thread_local std::vector<int*> free;
    return free;
  }
};

}  // namespace

template <typename T>
int64_t sampler_scratch(int64_t n, int64_t D, bool predictor, int64_t max_draws,
                        bool posterior_noise) {
  Scratch<T> s;
  return s.layout(nullptr, n, D, predictor, max_draws, posterior_noise);
}

template <typename T>
SamplerStatus sample(const SampleArgs<T>& s, const SamplerPlan& plan, uintptr_t stream,
                     const StopFn& should_stop, const std::function<bool(int64_t)>& on_steps,
                     int64_t every) {
  const cudaStream_t st = cudaStream_t(stream);
  const int64_t n = s.n, D = s.pass.D, nD = n * D, K = plan.K;
  if (n == 0) return {};
  int64_t max_draws = 0;
  for (int64_t k = 0; plan.draws && k < K; ++k)
    max_draws = plan.draws[k] > max_draws ? plan.draws[k] : max_draws;
  Scratch<T> w;
  w.layout(s.scratch, n, D, plan.predictor, max_draws, s.posterior_noise);
  PosteriorArgs<T> a = s.pass;
  a.q = w.q;
  a.alpha = w.alpha;
  a.sigma2 = w.sigma2;
  a.xs2 = w.xs2;
  a.M = n;
  a.lam_min = w.lam_min;
  a.best = w.best;
  a.s0 = w.s0;
  a.sum_w2 = w.sum_w2;
  a.s1 = w.s1;
  a.s2 = w.s2;
  a.s0_light = w.s0l;
  a.s2_light = w.s2l;
  a.s1_light = w.s1l;

  // the pass's per-query inputs for states xs at grid point j
  auto setup = [&](const T* xs, int64_t j) {
    MIXSCORE_LAUNCH(setup_kernel<T>, unsigned(n), kThreads, 0, st, xs, D, a.mu, plan.alpha[j],
                    plan.sigma2[j], w.q, w.xs2, w.alpha, w.sigma2);
    check(cudaGetLastError(), "sampler set-up kernel launch");
    a.x = xs;
    a.products = s.products[j];
  };
  // xh = the (regularized) denoiser at states xs and grid point j (and its float64 posterior
  // mean in `mean` where given)
  auto denoise = [&](const T* xs, int64_t j, T* xh, double* mean) {
    const double alpha = plan.alpha[j], sigma2 = plan.sigma2[j];
    setup(xs, j);
    posterior<T>(a, stream);
    Finish f{alpha, sigma2, plan.eb_log_c != nullptr, 0.0, 0.0, s.log_weight_sum, nullptr, 0.0,
             mean};
    if (f.eb) {
      f.log_c = plan.eb_log_c[j];
      f.to_kernel = plan.eb_density
          ? 0.0 : s.log_weight_sum + 0.5 * double(D) * (kLog2Pi + std::log(sigma2));
    }
    if (plan.shift) {
      f.shift = s.shift;
      f.shift_scale = plan.shift_scale[j];
    }
    MIXSCORE_LAUNCH(denoise_kernel<T>, unsigned(n), kThreads, 0, st, a, f, xh);
    check(cudaGetLastError(), "sampler denoiser kernel launch");
  };
  // xhd = the mean of R training points drawn from w(x, t_k) (the naive sampler's step k)
  auto draws_mean = [&](int64_t k, int64_t R) {
    setup(s.x, k);
    DrawsArgs<T> d{a, R, plan.seed ^ kDrawsKey, s.rows, uint32_t(k * R), w.draws};
    d.pass.cut = s.draws_cut;
    draws<T>(d, stream);
    MIXSCORE_LAUNCH(draws_mean_kernel<T>, blocks_for(nD), kThreads, 0, st, a.train, w.draws, n,
                    D, R, w.xhd);
    check(cudaGetLastError(), "sampler draws-mean kernel launch");
  };
  // the effective sampler's noise at step k (after the denoiser at (x, t_k): its pass's inputs
  // and the posterior mean w.xhd)
  auto cov_noise_at = [&](int64_t k) {
    CovNoiseArgs<T> d{a, w.xhd, s.noise_key, s.rows, uint32_t(k), w.noise};
    d.pass.cut = s.noise_cut;
    d.pass.cap = 0.0;  // every kept weight exact (as backends/cuda.py's cov_noise)
    cov_noise<T>(d, stream);
  };
  InFlight fl(st);
  int64_t next_save = 0;
  auto save = [&](int64_t step) {
    for (; next_save < plan.n_save && plan.save_steps[next_save] == step; ++next_save)
      check(cudaMemcpyAsync(s.saved + next_save * nD, s.x, sizeof(T) * nD,
                            cudaMemcpyDeviceToDevice, st),
            "saving a state");
  };
  // step k has finished: its flag, then Ctrl-C and the callback (false: stop)
  auto finished = [&](int64_t k, SamplerStatus* status) {
    check(cudaEventSynchronize(fl.done[k % 2].e), "sampler step");
    if (fl.flag[k % 2]) {
      *status = {true, k};
      return false;
    }
    const bool report = on_steps && ((k + 1) % every == 0 || k + 1 == K);
    if (should_stop() || (report && on_steps(k + 1))) {
      *status = {false, -1};
      return false;
    }
    return true;
  };
  save(0);
  SamplerStatus status;
  for (int64_t k = 0; k < K; ++k) {
    StepCoef c;
    for (int i = 0; i < kNumCoef; ++i) c.c[i] = plan.coef[k * kNumCoef + i];
    const int64_t R = plan.draws ? plan.draws[k] : 0;
    if (R > 0) {
      draws_mean(k, R);
    } else {
      denoise(s.x, k, w.xh, s.posterior_noise ? w.xhd : nullptr);
      if (s.posterior_noise && c.c[kS] != 0.0) cov_noise_at(k);
    }
    // Heun's last step is Euler's (Ce = Cb = 0): no second denoiser, as the Python loop
    const bool predict = plan.predictor && (c.c[kCe] != 0.0 || c.c[kCb] != 0.0);
    if (predict) {
      MIXSCORE_LAUNCH(predict_kernel<T>, blocks_for(nD), kThreads, 0, st, s.x, w.xh, nD, c,
                      w.xe);
      check(cudaGetLastError(), "sampler predictor kernel launch");
      denoise(w.xe, k + 1, w.xhb, nullptr);
    }
    int* bad = w.bad + k % 2;
    check(cudaMemsetAsync(bad, 0, sizeof(int), st), "clearing the NaN/Inf flag");
    MIXSCORE_LAUNCH(step_kernel<T>, blocks_for(n * ((D + 1) / 2)), kThreads, 0, st, s.x, w.xh,
                    R > 0 ? w.xhd : nullptr, predict ? w.xe : nullptr,
                    predict ? w.xhb : nullptr, s.posterior_noise ? w.noise : nullptr, n, D,
                    s.rows, plan.seed, uint32_t(k), c, bad);
    check(cudaGetLastError(), "sampler step kernel launch");
    check(cudaMemcpyAsync(fl.flag + k % 2, bad, sizeof(int), cudaMemcpyDeviceToHost, st),
          "reading the NaN/Inf flag");
    check(cudaEventRecord(fl.done[k % 2].e, st), "recording a step");
    save(k + 1);
    // (stopping after step k - 1 leaves x one step further: the caller raises, never returns it)
    if (k > 0 && !finished(k - 1, &status)) return status;
  }
  if (!finished(K - 1, &status)) return status;
  if (plan.end_denoise) {
    denoise(s.x, K, w.xh, nullptr);
    check(cudaMemcpyAsync(s.x, w.xh, sizeof(T) * nD, cudaMemcpyDeviceToDevice, st),
          "the end denoiser");
  }
  return status;
}

template int64_t sampler_scratch<float>(int64_t, int64_t, bool, int64_t, bool);
template int64_t sampler_scratch<double>(int64_t, int64_t, bool, int64_t, bool);
template SamplerStatus sample<float>(const SampleArgs<float>&, const SamplerPlan&, uintptr_t,
                                     const StopFn&, const std::function<bool(int64_t)>&,
                                     int64_t);
template SamplerStatus sample<double>(const SampleArgs<double>&, const SamplerPlan&, uintptr_t,
                                      const StopFn&, const std::function<bool(int64_t)>&,
                                      int64_t);

}  // namespace cuda
}  // namespace mixscore
