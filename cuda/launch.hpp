// Host entry points of the CUDA kernels (defined in the .cu files, called by bindings.cpp).
// Every pointer is a device pointer; launches go to `stream` (the caller's library's current
// stream) and are checked; an error is thrown as std::runtime_error.
#pragma once
#include <cstdint>
#include <functional>

#include "mixscore/sampler.hpp"  // SamplerPlan, SamplerStatus, StopFn

namespace mixscore {
namespace cuda {

// The posterior pass (cuda/posterior.cu) over N training points for M queries.
template <typename T>
struct PosteriorArgs {
  const T* x;            // (M, D) the queries
  const T* q;            // (M, D) fl_T(x - alpha mu)
  const T* train;        // (N, D) the training points
  const T* packed;       // (N, D) fl_T(X_n - mu)
  const double* p2;      // (N,) |packed_n|^2
  const double* pnorm;   // (N,) |packed_n|
  const double* xc2;     // (N,) |X_n - mu|^2
  const double* mu;      // (D,) the training mean
  const double* alpha;   // (M,)
  const double* sigma2;  // (M,)
  const double* xs2;     // (M,) |x - alpha mu|^2
  const double* logw;    // (N,) log pi_n, or null for equal weights
  int64_t M, N, D;
  double mu_norm;        // |mu|
  // the refinement rule (nats; cpp/include/mixscore/engine.hpp documents it)
  double tol, cap, dom, cut;
  int budget;
  int products;          // the logits product: 0 float32, 1 float64, 2 3xTF32 (Products)
  void* workspace;       // posterior_workspace<T>(N, D, ws_rows, products) bytes
  int64_t ws_rows;       // queries per chunk, a multiple of 128
  double* lam_min;       // (M,) outputs: exact smallest penalized squared distance
  int64_t* best;         // (M,) its index (lowest among exact ties)
  double *s0, *sum_w2;   // (M,) sums of w and w^2 over every entry
  // the entries whose lam was recomputed exactly, about the centre c = X_best in float64:
  double *s2, *s1;       // sum w |X_n - c|^2 (M,), sum w (X_n - c) (M, D)
  // the others (the weighted-sums product), about the mean mu:
  double *s0_light, *s2_light, *s1_light;  // sum w, w |X_n - mu|^2 (M,), w (X_n - mu) (M, D)
};

template <typename T>
void posterior(const PosteriorArgs<T>& a, uintptr_t stream);

// Bytes of workspace the posterior pass needs for chunks of `rows` queries.
template <typename T>
int64_t posterior_workspace(int64_t N, int64_t D, int64_t rows, int products);
constexpr int64_t kDirectMaxD = 16;  // up to this D, the direct kernel (no workspace)

// Exact k nearest training points (cuda/nearest.cu): squared distances (M, k) ascending by
// (distance, index), indices (M, k); k <= kMaxK.
constexpr int kMaxK = 32;
template <typename T>
struct NearestArgs {
  const T* x;        // (M, D) queries
  const T* q;        // (M, D) fl_T(x - mu)
  const T* train;    // (N, D)
  const T* packed;   // (N, D) fl_T(X_n - mu)
  const double* p2;  // (N,)
  const double* xs2; // (M,) |x - mu|^2
  int64_t M, N, D, k;
  double mu_norm;
  void* workspace;   // ws_rows x N x sizeof(T) bytes: one chunk's dot products (D > 16 only)
  int64_t ws_rows;
  double* sq_dist;   // (M, k)
  int64_t* index;    // (M, k)
};

template <typename T>
void nearest(const NearestArgs<T>& a, uintptr_t stream);

// Standard normals of (seed, samples[i], step), i < n, into z (n, D): the Philox stream of
// cpp/include/mixscore/philox.hpp, the same numbers as the CPU samplers draw.
void philox_normals(uint64_t seed, const int64_t* samples, int64_t n, uint32_t step, int64_t D,
                    double* z, uintptr_t stream);

// Posterior draws (cuda/draws.cu): R local training indices per query drawn from w_n(x, t) by
// exponential jumps in index order, the streams of mixscore.covariance.posterior_draws.
template <typename T>
struct DrawsArgs {
  PosteriorArgs<T> pass;  // the queries (x, q, alpha, sigma2, xs2), the training set, the
                          // refinement rule with `cut` the draws' truncation (nats below the
                          // maximum), products, workspace and ws_rows; its outputs unused
  int64_t R;
  uint64_t key;           // seed ^ DRAWS_KEY
  const int64_t* rows;    // (M,) each query's stream row (a sample's global index)
  uint32_t first_step;    // draw r uses Philox step first_step + r
  int64_t* out;           // (M, R)
};

template <typename T>
void draws(const DrawsArgs<T>& d, uintptr_t stream);

// Gaussian noise with covariance Cov_w(X_0) per query (cuda/cov_noise.cu): the streams of
// mixscore.covariance.cov_noise.
template <typename T>
struct CovNoiseArgs {
  PosteriorArgs<T> pass;  // as DrawsArgs's, `cut` the noise's truncation (nats)
  const double* mean;     // (M, D) the posterior means
  uint64_t key;           // seed ^ NOISE_KEY
  const int64_t* rows;    // (M,) each query's stream row
  uint32_t step;
  double* out;            // (M, D)
};

template <typename T>
void cov_noise(const CovNoiseArgs<T>& d, uintptr_t stream);

// The fused sampler loop on the GPU (cuda/sampler.cu): the plan of mixscore/sampler.hpp run on
// the states x (n, D) in place. The plan's per-step tables (coef, alpha, sigma2, draws,
// save_steps, eb_log_c, shift_scale) are host arrays; its `rows` and `shift` are ignored (the
// device arrays below replace them).
template <typename T>
struct SampleArgs {
  PosteriorArgs<T> pass;  // the training set, the refinement rule and the pass's workspace
                          // (sized for the widest product used); the per-query fields are set
                          // by the loop
  T* x;                   // (n, D) the states, in place
  int64_t n;
  T* saved;               // (n_save, n, D) or null
  const int64_t* rows;    // (n,) the samples' noise streams (global indices)
  const double* shift;    // (D,) the perturbation, or null
  const int* products;    // (K + 1,) host: the logits product at each grid point (Products)
  double log_weight_sum;  // log sum pi (the log-density of Empirical Bayes)
  double draws_cut;       // the naive sampler's truncation of the draws (nats, see draws)
  bool posterior_noise;   // the effective sampler: z ~ N(0, Cov_w(X_0)) (cov_noise) for
                          // the Philox normals
  uint64_t noise_key;     // seed ^ NOISE_KEY (with posterior_noise)
  double noise_cut;       // its truncation (nats)
  void* scratch;          // sampler_scratch<T>(n, D, plan.predictor, max draws,
                          // posterior_noise) bytes
};

template <typename T>
SamplerStatus sample(const SampleArgs<T>& s, const SamplerPlan& plan, uintptr_t stream,
                     const StopFn& should_stop, const std::function<bool(int64_t)>& on_steps,
                     int64_t every);

// Bytes of scratch the sampler loop needs for n samples (max_draws: the largest plan.draws).
template <typename T>
int64_t sampler_scratch(int64_t n, int64_t D, bool predictor, int64_t max_draws,
                        bool posterior_noise);

int device_count();

// The measured float32 FMA rate of the current device, FLOP/s (cuda/peak.cu).
double fp32_fma_peak();

}  // namespace cuda
}  // namespace mixscore
