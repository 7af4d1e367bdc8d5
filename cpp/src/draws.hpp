// The posterior-draws handler of the driver (driver.hpp): per query, R independent training
// indices n_r ~ w_n(x, t) in one pass over the training set (the naive estimator of the
// generalization-through-variance paper, Prop. 4.1; SCIENCE.md section 4), without the
// weighted-sum GEMM.
//
// Exponential jumps (Efraimidis and Spirakis' A-ExpJ for one item), in the form of the race
// n_r = argmin_n E_n / w_n (E_n ~ Exp(1), equivalent to Gumbel-max argmax_n l_n + G_n), with
//     w_n = exp(-(lam_n - Lambda) / (2 sigma^2)),
// Lambda the running minimum of lam_n = |x - alpha X_n|^2 - 2 sigma^2 log pi_n. Each draw keeps
// its best key K and the weight X still to skip before the next replacement: the entries are
// visited in the driver's fixed order; entry k replaces the draw when its weight exceeds what
// is left of X (the chance that none of a run of weight S does is e^{-K S}); the new key is
// E / w_k with E ~ Exp(1) conditioned below K w_k, the next skip J / K with J ~ Exp(1). So a
// draw needs O(log N) random numbers, not one per entry: the draws cost about one weight per
// entry (whole blocks of 16 skipped at once) on top of the logits, and no weighted-sum GEMM.
// The random numbers of replacement j of draw s of query row `row` are the Philox block with
// counter (j, s, row lo, row hi) and key seed ^ DRAWS_KEY (the NumPy reference,
// python/mixscore/covariance.py posterior_draws, visits the points in the same order and gives
// the same indices in float64 except where rounding decides). When Lambda drops the states are
// rescaled (K / f, X f). Entries beyond the engine's cutoff (relative weight below e^-cutoff)
// are left out; GEMM-path logits follow the engine's refinement rule (lam_row.hpp). Each query
// is handled by one thread in a fixed order: results do not depend on the number of threads
// or on the batch split.
#pragma once
#include "lam_row.hpp"
#include "mixscore/draws.hpp"
#include "mixscore/fastexp.hpp"
#include "mixscore/philox.hpp"

#include <cmath>

namespace mixscore {
namespace MIXSCORE_ISA {

template <typename T>
struct DrawsHandler {
  static constexpr int64_t kQueryTile = 128;  // the posterior's GEMM shape (same logits)
  static constexpr bool kDynamicCut = false, kLookahead = true, kSplit = false;
  // sweep 0 finds each query's minimum Lambda (so every weight is relative to the final
  // maximum and the cutoff is the NumPy reference's), sweep 1 draws
  static constexpr int kSweeps = 2;

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
  std::vector<double> lam, hint;  // per query: running minimum of lam, its hint
  std::vector<double> key, rem;   // per draw: best key, weight left to skip
  std::vector<int64_t> best;      // per draw: the current draw
  std::vector<uint32_t> jump;     // per draw: replacements so far (its Philox counter)
  std::vector<double> w, bsum;    // tile scratch: weights, their sums over blocks of 16
  std::vector<int32_t> status;
  bool drawing = false;  // sweep 1

  DrawsHandler(QueryTile<T>& qt_, Shared& sh_)
      : qt(qt_), tr(qt_.tr), q(qt_.q), sh(sh_), R(sh_.spec.R), lam(kQueryTile),
        hint(kQueryTile), key(kQueryTile * R), rem(kQueryTile * R), best(kQueryTile * R),
        jump(kQueryTile * R), w(kTrainTile), bsum(kTrainTile / 16), status(kTrainTile) {}

  void begin(int64_t, int64_t) {
    std::fill(lam.begin(), lam.end(), kInf);
    std::fill(hint.begin(), hint.end(), kInf);
    std::fill(key.begin(), key.end(), kInf);  // the first entry with weight replaces
    std::fill(rem.begin(), rem.end(), 0.0);
    std::fill(best.begin(), best.end(), int64_t(-1));
    std::fill(jump.begin(), jump.end(), 0u);
    drawing = false;
  }
  void done() {}
  void next_sweep() { drawing = true; }

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
    if (!drawing) {
      lam[il] = std::min(lam[il], lmin);
      return;
    }
    const int64_t* order = tr.order + p0;
    race(il, i, nt, [](int64_t) { return true; }, [order](int64_t k) { return order[k]; });
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
    if (!drawing && lmin_all - B >= lam[il]) return;  // the tile cannot lower the minimum
    const double lam_ub = std::min(ub0, lmin_all + B);  // an upper bound on the true minimum
    int32_t* S = status.data();
    const RowRefinement rr = refine_row(qt, i, n0, nt, L, S, B, lam_ub, inv, sh.opt);
    if (!drawing) {
      lam[il] = std::min(lam[il], rr.lmin);
      return;
    }
    const auto index = [n0](int64_t k) { return n0 + k; };
    if (rr.classified) {
      race(il, i, nt, [S](int64_t k) { return S[k] != kSkip; }, index);
    } else {
      const double cut = sh.opt.cutoff;
      race(il, i, nt,
           [L, B, lam_ub, inv, cut](int64_t k) { return (L[k] - B - lam_ub) * inv <= cut; },
           index);
    }
  }

  // The draws over one tile for query il (sweep 1, Lambda final): L = qt.lam, kept(k) the
  // entries the refinement rule keeps, index(k) the entry's original (local) index.
  template <typename Kept, typename Index>
  void race(int64_t il, int64_t i, int64_t nt, Kept kept, Index index) {
    const double inv = inv_two_sigma2(q.sigma2[i]), cut = sh.opt.cutoff;
    const double* L = qt.lam.data();
    const double lam0 = lam[il];
    double* W = w.data();
#pragma omp simd
    for (int64_t k = 0; k < nt; ++k) {
      const double g = (L[k] - lam0) * inv;
      const bool in = kept(k) & (g <= cut);
      W[k] = in ? exp_nonpositive(-std::max(g, 0.0)) : 0.0;
    }
    double total = 0.0;  // the tile's weight, from sums over blocks of 16 (skipped whole)
    for (int64_t b = 0; b * 16 < nt; ++b) {
      const int64_t k1 = std::min(nt, b * 16 + 16);
      double sb = 0.0;
#pragma omp simd reduction(+ : sb)
      for (int64_t k = b * 16; k < k1; ++k) sb += W[k];
      bsum[b] = sb;
      total += sb;
    }
    for (int64_t r = 0; r < R; ++r) jumps(il, i, r, nt, total, index);
  }

  // Draw r of query il over the tile's weights W: skip the weight rem[r] left before its next
  // replacement, replace, draw the next skip (exponential jumps: Efraimidis and Spirakis'
  // A-ExpJ, in the form of the race argmin_n E_n / w_n).
  template <typename Index>
  void jumps(int64_t il, int64_t i, int64_t r, int64_t nt, double total, Index index) {
    double& X = rem[il * R + r];
    if (!(total > X)) {  // no replacement in this tile (the common case)
      X -= total;
      return;
    }
    double& K = key[il * R + r];
    const DrawSpec& sp = sh.spec;
    const uint64_t row = uint64_t(sp.rows[i]);
    const uint32_t s = sp.first_step + uint32_t(r);
    const double* W = w.data();
    for (int64_t k = 0; k < nt;) {
      if ((k & 15) == 0 && !(bsum[k >> 4] > X)) {
        X -= bsum[k >> 4];
        k += 16;
        continue;
      }
      const double wk = W[k];
      if (!(wk > X)) {
        X -= wk;
        ++k;
        continue;
      }
      // entry k replaces the draw: its key E / w_k with E ~ Exp(1) below K w_k, then the
      // weight to skip before the next replacement, J / K' with J ~ Exp(1)
      const Philox4x32 b = philox4x32_10(jump[il * R + r]++, s, uint32_t(row),
                                         uint32_t(row >> 32), uint32_t(sp.key),
                                         uint32_t(sp.key >> 32));
      const double u1 = unit_double(b.v[0], b.v[1]), u2 = unit_double(b.v[2], b.v[3]);
      const double p = K < kInf ? -std::expm1(-K * wk) : 1.0;
      K = -std::log1p(-u1 * p) / wk;
      best[il * R + r] = index(k);
      X = K > 0.0 ? -std::log1p(-u2) / K : kInf;
      ++k;
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
