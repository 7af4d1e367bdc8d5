// The posterior-draws handler of the driver (driver.hpp): per query, R independent training
// indices n_r ~ w_n(x, t) in one pass over the training set (the naive estimator of the
// generalization-through-variance paper, Prop. 4.1; SCIENCE.md section 4), without the
// weighted-sum GEMM.
//
// The exponential race, equivalent to Gumbel-max argmax_n (l_n + G_n): with E = -log U,
//     n_r = argmin_n E_{n,r} / w_n,    w_n = exp(-(lam_n - Lambda) / (2 sigma^2)),
// Lambda the running minimum of lam_n = |x - alpha X_n|^2 - 2 sigma^2 log pi_n (the stored best
// keys are rescaled when Lambda drops). U_{n,r} is the Philox uniform of (key seed ^ DRAWS_KEY,
// stream id = row * N + n, step first_step + r): the streams of the NumPy reference
// (python/mixscore/covariance.py, posterior_draws), so in float64 both give the same indices
// except at ties within rounding. Entries beyond the engine's cutoff (relative weight below
// e^-cutoff) are left out; GEMM-path logits follow the engine's refinement rule (lam_row.hpp).
// Since -log U >= 1 - U, an entry can only win draw r when 1 - U < K_r w_n (K_r the draw's
// best key): the uniforms are drawn for every kept entry in one vectorized loop, the log only
// for those candidates. Ties go to the lowest index; each query is handled by one thread in a
// fixed order, so results do not depend on the number of threads or on the batch split.
#pragma once
#include "lam_row.hpp"
#include "mixscore/draws.hpp"
#include "mixscore/fastexp.hpp"
#include "mixscore/philox.hpp"

namespace mixscore {
namespace MIXSCORE_ISA {

template <typename T>
struct DrawsHandler {
  static constexpr int64_t kQueryTile = 128;  // the posterior's GEMM shape (same logits)
  static constexpr bool kDynamicCut = false, kLookahead = true, kSplit = false;

  struct Shared {
    DrawSpec spec;
    int64_t* out;        // M x R local indices
    EngineOptions opt;   // the cutoff lowered to log N + margin
  };
  static void prepare(Shared&, int64_t) {}
  static void merge(Shared&, int64_t, int64_t) {}

  QueryTile<T>& qt;
  const TrainSet<T>& tr;
  const Queries<T>& q;
  const Shared& sh;
  const int64_t R;
  std::vector<double> lam, hint, key;  // per query: running minimum, hint; per draw: best key
  std::vector<int64_t> best;
  std::vector<double> w, cw, v;        // tile scratch: weights, kept weights, 1 - U
  std::vector<int64_t> cn;             // kept entries' original indices
  std::vector<int32_t> status;

  DrawsHandler(QueryTile<T>& qt_, Shared& sh_)
      : qt(qt_), tr(qt_.tr), q(qt_.q), sh(sh_), R(sh_.spec.R), lam(kQueryTile),
        hint(kQueryTile), key(kQueryTile * sh_.spec.R), best(kQueryTile * sh_.spec.R),
        w(kTrainTile), cw(kTrainTile), v(kTrainTile), cn(kTrainTile), status(kTrainTile) {}

  void begin(int64_t, int64_t) {
    std::fill(lam.begin(), lam.end(), kInf);
    std::fill(hint.begin(), hint.end(), kInf);
    std::fill(key.begin(), key.end(), kInf);
    std::fill(best.begin(), best.end(), int64_t(-1));
  }
  void done() {}

  // Tiles whose lam all exceed this are beyond the cutoff from the final maximum.
  double cut(int64_t il, int64_t i) const {
    return std::min(lam[il], hint[il]) + sh.opt.cutoff / inv_two_sigma2(q.sigma2[i]);
  }
  bool wants_hint(int64_t, int64_t i, double lb_best, double lb_far) const {
    return (lb_far - lb_best) * inv_two_sigma2(q.sigma2[i]) > sh.opt.cutoff;
  }
  bool precise_pays(int64_t, int64_t i, double plain, double precise) const {
    return precise_product_pays(plain, precise, inv_two_sigma2(q.sigma2[i]), sh.opt.approx_cap);
  }
  void direct_hint(int64_t il, int64_t, int64_t, double lmin) {
    hint[il] = std::min(hint[il], lmin);
  }

  // Direct path: exact lam of the tile at positions [p0, p0 + nt) in qt.lam.
  template <int DC>
  void direct_tile(int64_t il, int64_t i, int64_t p0, int64_t nt, double lmin) {
    const int64_t* order = tr.order + p0;
    race(il, i, nt, lmin, [](int64_t) { return true; },
         [order](int64_t k) { return order[k]; });
  }

  // Lookahead: lower hint[il] to this tile's smallest approximate lam plus its error bound.
  void gemm_hint(int64_t il, int64_t i, int64_t n0, int64_t nt) {
    int nin = 0;
    const double lmin = approx_lam_row(qt, il, i, n0, nt, qt.lam.data(), -kInf, nin);
    hint[il] = std::min(hint[il], lmin + qt.tile_bound(il));
  }
  void gemm_tile_begin(int64_t) {}
  void gemm_tile_end(int64_t, int64_t) {}

  // GEMM path: approximate lam with its bound, refined by the engine's rule, then the race.
  void gemm_row(int64_t il, int64_t i, int64_t n0, int64_t nt) {
    const double inv = inv_two_sigma2(q.sigma2[i]), B = qt.tile_bound(il);
    double* L = qt.lam.data();
    const double ub0 = std::min(lam[il], hint[il]);
    int nin = 0;
    const double lmin_all =
        approx_lam_row(qt, il, i, n0, nt, L, ub0 + sh.opt.cutoff / inv + B, nin);
    if (nin == 0) return;
    const double lam_ub = std::min(ub0, lmin_all + B);  // an upper bound on the true minimum
    int32_t* S = status.data();
    const RowRefinement rr = refine_row(qt, i, n0, nt, L, S, B, lam_ub, inv, sh.opt);
    const auto index = [n0](int64_t k) { return n0 + k; };
    if (rr.classified) {
      race(il, i, nt, rr.lmin, [S](int64_t k) { return S[k] != kSkip; }, index);
    } else {
      const double cut = sh.opt.cutoff;
      race(il, i, nt, rr.lmin,
           [L, B, lam_ub, inv, cut](int64_t k) { return (L[k] - B - lam_ub) * inv <= cut; },
           index);
    }
  }

  // The race over one tile for query il: L = qt.lam, lmin the smallest lam where kept(k),
  // index(k) the entry's original (local) index.
  template <typename Kept, typename Index>
  void race(int64_t il, int64_t i, int64_t nt, double lmin, Kept kept, Index index) {
    const double inv = inv_two_sigma2(q.sigma2[i]), cut = sh.opt.cutoff;
    const double* L = qt.lam.data();
    if (lmin < lam[il]) {  // the keys are relative to Lambda: rescale them
      if (lam[il] < kInf) {
        const double f = std::exp((lam[il] - lmin) * inv);  // may be inf: those keys lose
        for (int64_t r = 0; r < R; ++r) key[il * R + r] *= f;
      }
      lam[il] = lmin;
    }
    const double lam0 = lam[il], ub = std::min(lam0, hint[il]);
    double* W = w.data();
#pragma omp simd
    for (int64_t k = 0; k < nt; ++k) {
      const double g = (L[k] - lam0) * inv;
      const bool in = kept(k) & ((L[k] - ub) * inv <= cut);
      W[k] = in ? exp_nonpositive(-std::max(g, 0.0)) : 0.0;
    }
    int64_t m = 0;  // compact the kept entries
    for (int64_t k = 0; k < nt; ++k) {
      cn[m] = index(k);
      cw[m] = W[k];
      m += W[k] > 0.0;
    }
    for (int64_t r = 0; r < R; ++r) race_draw(il, i, r, m);
  }

  // Draw r of query il over the m kept entries of the tile (cn, cw).
  void race_draw(int64_t il, int64_t i, int64_t r, int64_t m) {
    const DrawSpec& sp = sh.spec;
    const uint64_t base = uint64_t(sp.rows[i]) * uint64_t(sp.n_total);
    const uint32_t k0 = uint32_t(sp.key), k1 = uint32_t(sp.key >> 32);
    const uint32_t step = sp.first_step + uint32_t(r);
    double& K = key[il * R + r];
    int64_t& b = best[il * R + r];
    const double* CW = cw.data();
    const int64_t* CN = cn.data();
    double* V = v.data();
    // -log U >= 1 - U: only entries with 1 - U < K w (with a margin for rounding) can win
    const double Km = K * (1.0 + 1e-9);
    int any = 0;
#pragma omp simd reduction(| : any)
    for (int64_t j = 0; j < m; ++j) {
      const uint64_t id = base + uint64_t(CN[j]);
      const Philox4x32 blk =
          philox4x32_10(0u, step, uint32_t(id), uint32_t(id >> 32), k0, k1);
      const double vj = 1.0 - unit_double(blk.v[0], blk.v[1]);  // exact
      V[j] = vj;
      any |= int(vj < Km * CW[j]);
    }
    if (!any) return;
    for (int64_t j = 0; j < m; ++j) {
      if (!(V[j] < K * (1.0 + 1e-9) * CW[j])) continue;
      const double u = 1.0 - V[j];
      if (!(u > 0.0)) continue;  // E = inf never wins
      const double kj = -log_unit(u) / CW[j];
      if (kj < K || (kj == K && CN[j] < b)) {
        K = kj;
        b = CN[j];
      }
    }
  }

  void finish(int64_t il, int64_t i, int64_t) {
    for (int64_t r = 0; r < R; ++r) sh.out[i * R + r] = best[il * R + r];
  }
};

// R posterior draws for each of M queries (mixscore/draws.hpp).
template <typename T>
bool posterior_draws(const TrainSet<T>& tr, const Queries<T>& q, const DrawSpec& spec,
                     int64_t* out, const EngineOptions& opt, const StopFn& should_stop) {
  // the engine's truncation: entries more than log N + margin nats below the maximum carry
  // a total probability below e^-margin
  typename DrawsHandler<T>::Shared shared{spec, out, opt};
  shared.opt.cutoff =
      std::min(opt.cutoff, std::log(double(tr.global_n)) + (sizeof(T) == 4 ? 20.0 : 40.0));
  return drive<DrawsHandler<T>>(tr, q, shared, opt.num_threads, should_stop);
}

}  // namespace MIXSCORE_ISA
}  // namespace mixscore
