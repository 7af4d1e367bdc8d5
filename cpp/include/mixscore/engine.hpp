// The one streaming engine: statistics of the posterior over training points
//   w_n(x, t) = softmax_n( log pi_n - |x - alpha X_n|^2 / (2 sigma^2) )
// computed for M queries in one pass over the N training points (SCIENCE.md sections 1, 6, 8).
#pragma once
#include <cstdint>
#include <functional>

namespace mixscore {

// Below this dimension every logit is computed directly in float64 (no GEMM stage), from the
// training set's direct layout (TrainSet::XT, order, box: see mixscore/direct_layout.hpp).
constexpr int64_t kDirectMaxD = 16;
// The direct path's tiles of training points. Smaller tiles are left out more often at small
// sigma but cost more per tile: 512 was fastest at every sigma for D <= 3 (N = 20000; 128 and
// 256 measured), and within 3% of the untiled engine where nothing can be left out.
constexpr int64_t kDirectTile = 512;

// Training points per tile of the GEMM path (the column block of the logit GEMM).
constexpr int64_t kTrainTile = 512;

// A view of a prepared training set (mixscore/prepared.hpp builds it once). T is float or
// double.
template <typename T>
struct TrainSet {
  const T* X = nullptr;         // N x D original data, row-major (exact refinement reads this)
  const T* packed = nullptr;    // the centred rows Xc = T(X - mu) in tiles of kTrainTile rows,
                                // each packed once into the logit GEMM's panels for the
                                // running instruction set (the weighted-sum GEMM centres the
                                // rows it packs with the same rounding)
  const double* norm2c = nullptr;  // |Xc_n|^2 (N) of the rounded rows
  const double* normc = nullptr;   // |Xc_n| (N)
  const double* logw = nullptr;    // log pi_n (N) or nullptr for equal weights
  const double* mu = nullptr;      // D
  // Direct path only (D < kDirectMaxD): the points in spatially compact tiles of kDirectTile.
  const double* XT = nullptr;         // D x N in double, transposed, tile order
  const int64_t* order = nullptr;     // tile position -> original index
  const double* logw_tiled = nullptr; // log pi in tile order, or nullptr
  const double* box = nullptr;        // per tile: lo[D], hi[D], max log pi (stride 2 D + 1)
  int64_t N = 0, D = 0;
  // Shards: indices are reported as row_offset + local index; the cutoff uses the global
  // number of points, the log-density the global log sum pi.
  int64_t row_offset = 0;
  int64_t global_n = 0;
  double logw_sum = 0.0;
};

// Per-query inputs: the query itself and alpha, sigma^2 at its time.
template <typename T>
struct Queries {
  const T* x = nullptr;             // M x D
  const double* alpha = nullptr;    // M
  const double* sigma2 = nullptr;   // M
  int64_t M = 0;
};

// Outputs; any pointer may be null (not requested).
template <typename T>
struct Outputs {
  T* denoised = nullptr;     // M x D  posterior mean xhat0
  T* score = nullptr;        // M x D  (alpha xhat0 - x) / sigma^2
  T* eps = nullptr;          // M x D  (x - alpha xhat0) / sigma
  double* logpdf = nullptr;  // M
  double* tau2 = nullptr;    // M  posterior variance trace sum_n w_n |X_n - xhat0|^2
  double* max_weight = nullptr;  // M
  int64_t* argmax = nullptr;     // M
  double* n_eff = nullptr;       // M  1 / sum_n w_n^2
  // The partial state (python/mixscore/partial.py): the accumulators before finalization, with
  // weights w_n = exp(-(lam_n - lam_min) / (2 sigma^2)) relative to the running minimum, so the
  // contributions of disjoint training sets can be merged. argmax is the centre's index.
  double* lam_min = nullptr;  // M      min_n |x - alpha X_n|^2 - 2 sigma^2 log pi_n
  double* s0 = nullptr;       // M      sum_n w_n
  double* sum_w2 = nullptr;   // M      sum_n w_n^2
  double* s2 = nullptr;       // M      sum_n w_n |X_n - c|^2
  double* s1 = nullptr;       // M x D  sum_n w_n (X_n - c)
  double* centre = nullptr;   // M x D  c = X_argmax
  bool wants_moments() const { return tau2 || n_eff || sum_w2 || s2; }
};

struct EngineOptions {
  // Approximate (GEMM-expansion) logits whose rigorous error bound is below `refine_tol` nats
  // are used as they are.
  double refine_tol = 1e-9;
  // Entries whose bound exceeds `approx_cap` nats are always recomputed from direct float64
  // differences (this covers the small-sigma regime, where few entries carry weight).
  double approx_cap = 0.05;
  // Below the cap, the entries within `dominant_gap` nats of the running maximum are recomputed
  // when a tile holds at most `refine_budget` of them for the query (few points dominate: their
  // logit errors would not average out); otherwise the posterior is spread over many points and
  // the bounded, independent rounding errors average out.
  double dominant_gap = 6.0;
  int refine_budget = 16;
  // Entries more than `cutoff` nats below the maximum are dropped (weight < e^-cutoff). The
  // engine lowers it to log N + 20 nats (float32) or log N + 40 (float64): the dropped mass,
  // at most N e^-cut of the total, stays far below the output's rounding.
  double cutoff = 60.0;
  int num_threads = 0;  // 0: OpenMP default
};

// Polled by the engine's first thread; returning true stops the computation early.
using StopFn = std::function<bool()>;

// Returns false if should_stop() asked to stop (outputs are then incomplete).
template <typename T>
bool run_engine(const TrainSet<T>& train, const Queries<T>& q, const Outputs<T>& out,
                const EngineOptions& opt, const StopFn& should_stop);

// Instruction-set variants (cpp/src/variant.cpp compiled once per ISA; dispatch.cpp).
const char* selected_isa();
bool set_isa(const char* name);  // "avx512", "avx2", "generic" or "auto"

}  // namespace mixscore
