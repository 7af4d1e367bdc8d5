// The posterior handler of the driver (driver.hpp): every statistic of the posterior over
// training points
//     w_n(x, t) = softmax_n( log pi_n - |x - alpha X_n|^2 / (2 sigma^2) )
// (SCIENCE.md sections 1, 6, 8) and the partial state (python/mixscore/partial.py).
//
// Per query, weights e^{-(lam - Lambda)/(2 sigma^2)} relative to the running minimum Lambda of
//     lam_n = |x - alpha X_n|^2 - 2 sigma^2 log pi_n       (logit l_n = -lam_n / (2 sigma^2))
// feed online accumulators centred on the current best training point c (S0, sum w^2,
// S1 = sum w (X - c), S2 = sum w |X - c|^2). On the GEMM path lam comes from the expansion with
// a rigorous bound; the refinement rule recomputes exactly the entries whose bound exceeds
// approx_cap nats, and the few dominant ones (within dominant_gap of the running maximum, at
// most refine_budget per tile) when it exceeds refine_tol; approximate weights go through the
// bulk add, a second GEMM P * Xc over the training points and row blocks that carry weight.
// Each query is handled by one thread in a fixed order: results do not depend on the number of
// threads or on how queries are split into calls.
#pragma once
#include "driver.hpp"
#include "lam_row.hpp"  // the entry classes (kApprox: weight through the P GEMM)
#include "mixscore/fastexp.hpp"

namespace mixscore {
namespace MIXSCORE_ISA {

struct QueryState {
  double lam = kInf;  // running minimum of lam (maximum logit)
  double s0 = 0, q = 0, s2 = 0;
  int64_t best = -1;  // index of the running argmax: the shift point c
  double wa = 0, wa_norm2 = 0;  // this tile's approximate weights: sum w, sum w |Xc|^2
};

template <typename T>
struct PosteriorHandler {
  static constexpr int64_t kQueryTile = 128;  // fixed GEMM shape: results independent of batch split
  static constexpr bool kDynamicCut = false;  // tiles left out against the cut before the loop only
  static constexpr bool kLookahead = true, kSplit = false;
  static constexpr int kSweeps = 1;  // one pass over the training set
  static constexpr int64_t kLdP = kTrainTile + 16;  // P's row stride, padded against L1 aliasing
  static constexpr int MR = Blocking<T>::MR, NR = Blocking<T>::NR;

  struct Shared {
    const Outputs<T>& out;
    double logsumw;
    EngineOptions opt;  // the cutoff lowered to log N + margin
  };
  static void prepare(Shared&, int64_t) {}
  static void merge(Shared&, int64_t, int64_t) {}

  QueryTile<T>& qt;
  const TrainSet<T>& tr;
  const Queries<T>& q;
  const Outputs<T>& out;
  const double logsumw;
  const EngineOptions& opt;
  const int64_t D, Dpad;  // Dpad: D rounded up to whole GEMM panels (row stride of PX)
  const bool moments;
  AlignedVector<T> Bp, P, PX;  // the bulk add: packed training rows, weights, weighted sums
  std::vector<double> w, s1, c, hint;  // hint: an upper bound on each query's final minimum
  std::vector<int32_t> status, active, idx, wblocks;
  std::vector<QueryState> st;

  PosteriorHandler(QueryTile<T>& qt_, Shared& sh)
      : qt(qt_), tr(qt_.tr), q(qt_.q), out(sh.out), logsumw(sh.logsumw), opt(sh.opt),
        D(qt_.D), Dpad((qt_.D + NR - 1) / NR * NR), moments(sh.out.wants_moments()) {
    const int64_t QT = kQueryTile, NT = kTrainTile;
    w.resize(NT);
    status.resize(NT);
    s1.resize(QT * D);
    c.resize(QT * D);
    st.resize(QT);
    hint.resize(QT);
    if (D >= kDirectMaxD) {
      Bp.resize(NT * Dpad);
      P.assign(QT * kLdP, T(0));
      PX.resize(QT * Dpad);
      active.resize(NT);
      idx.resize(NT);
      wblocks.resize(QT / MR);
    }
  }

  void begin(int64_t, int64_t) {
    for (int64_t il = 0; il < kQueryTile; ++il) {
      st[il] = QueryState{};
      std::fill(&s1[il * D], &s1[il * D] + D, 0.0);
      hint[il] = kInf;
    }
  }
  void done() {}

  // Tiles whose lam all exceed this are beyond the cutoff from the final maximum.
  double cut(int64_t il, int64_t i) const {
    return std::min(st[il].lam, hint[il]) + opt.cutoff / inv_two_sigma2(q.sigma2[i]);
  }
  bool precise_pays(int64_t, int64_t i, double plain, double precise) const {
    return precise_product_pays(plain, precise, inv_two_sigma2(q.sigma2[i]), opt.approx_cap);
  }
  // A hint pays only when the boxes are spread over more than the cutoff.
  bool wants_hint(int64_t, int64_t i, double lb_best, double lb_far) const {
    return (lb_far - lb_best) * inv_two_sigma2(q.sigma2[i]) > opt.cutoff;
  }
  void direct_hint(int64_t il, int64_t, int64_t, double lmin) {
    hint[il] = std::min(hint[il], lmin);
  }
  // One direct tile: the running minimum, then the weights and their sums. For D <= 3 the
  // second moments (sum w^2 for n_eff, sum w |X - c|^2 for tau2) only when requested: 10% of
  // the time of a denoiser-only call.
  template <int DC>
  void direct_tile(int64_t il, int64_t i, int64_t p0, int64_t nt, double lmin) {
    if (moments) direct_row<DC, true>(il, i, p0, nt, lmin);
    else direct_row<DC, false>(il, i, p0, nt, lmin);
  }

  // Lower the running minimum to (lam_new, idx): rescale and re-centre the accumulators.
  void move_max(int64_t il, double lam_new, int64_t idx, double inv) {
    QueryState& s = st[il];
    double* S1 = &s1[il * D];
    double* cc = &c[il * D];
    const double gap = (s.lam - lam_new) * inv;
    if (s.best >= 0 && s.s0 > 0 && !(gap <= opt.cutoff)) {
      // everything so far is beyond the cutoff from the new maximum: dropped, as any entry
      // there would be (a rescaling by exp(-gap) would leave 1e-300-sized leftovers)
      s.s0 = s.q = s.s2 = 0.0;
      std::fill(S1, S1 + D, 0.0);
    } else if (s.best >= 0 && s.s0 > 0) {
      double f = exp_nonpositive(-gap);
      s.s0 *= f;
      s.q *= f * f;
      s.s2 *= f;
      // X - c_new = (X - c_old) + delta, delta = c_old - c_new
      const T* Xn = tr.X + idx * D;
      double dot = 0.0, dd = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        double delta = cc[d] - double(Xn[d]);
        S1[d] *= f;
        dot += delta * S1[d];
        dd += delta * delta;
      }
      s.s2 += 2.0 * dot + s.s0 * dd;
      for (int64_t d = 0; d < D; ++d) S1[d] += s.s0 * (cc[d] - double(Xn[d]));
    }
    const T* Xn = tr.X + idx * D;
    for (int64_t d = 0; d < D; ++d) cc[d] = double(Xn[d]);
    s.lam = lam_new;
    s.best = idx;
  }

  // Accumulate one exact entry (original data, float64).
  void add_exact(int64_t il, int64_t n, double wn) {
    QueryState& s = st[il];
    const T* __restrict Xn = tr.X + n * D;
    double* __restrict S1 = &s1[il * D];
    const double* __restrict cc = &c[il * D];
    double sq = 0.0;
#pragma omp simd reduction(+ : sq)
    for (int64_t d = 0; d < D; ++d) {
      double diff = double(Xn[d]) - cc[d];
      S1[d] += wn * diff;
      sq += diff * diff;
    }
    s.s0 += wn;
    s.q += wn * wn;
    s.s2 += wn * sq;
  }

  // Lower the running minimum to the tile's minimum lmin (L holds the tile's lam), or move the
  // centre to an equal minimum with a lower original index: ties go to the lowest index.
  void take_min(int64_t il, int64_t p0, int64_t nt, double lmin, double inv) {
    QueryState& s = st[il];
    if (lmin > s.lam) return;
    const double* L = qt.lam.data();
    int64_t idx = std::numeric_limits<int64_t>::max();
    for_flagged(nt, [L, lmin](int64_t k) { return L[k] == lmin; },
                [&](int64_t k) { idx = std::min(idx, tr.order[p0 + k]); });
    if (lmin < s.lam || idx < s.best) move_max(il, lmin, idx, inv);
  }

  // One direct tile for one query: lam, the running minimum, then the weights and their sums.
  // For D <= 3 the second moments (sum w^2 for n_eff, sum w |X - c|^2 for tau2) only when
  // Moments: 10% of the time of a denoiser-only call. (Leaving them out of the per-dimension
  // loops of larger D changed how the compiler split the first moment's sum: its last bits.)
  template <int DC, bool Moments>
  void direct_row(int64_t il, int64_t i, int64_t p0, int64_t nt, double lmin) {
    const double inv = inv_two_sigma2(q.sigma2[i]);
    const double* L = qt.lam.data();
    take_min(il, p0, nt, lmin, inv);
    QueryState& s = st[il];
    const double lam0 = s.lam, cut = opt.cutoff;
    const double* cc = &c[il * D];
    double* S1 = &s1[il * D];
    double ws = 0.0, wq = 0.0, sq = 0.0;
    if constexpr (DC > 0) {  // one fused pass
      const double* c0 = tr.XT + p0;
      const double* c1 = DC > 1 ? c0 + tr.N : c0;
      const double* c2 = DC > 2 ? c0 + 2 * tr.N : c0;
      const double e0 = cc[0], e1 = DC > 1 ? cc[1] : 0.0, e2 = DC > 2 ? cc[2] : 0.0;
      double a0 = 0.0, a1 = 0.0, a2 = 0.0;
#pragma omp simd reduction(+ : ws, wq, a0, a1, a2, sq)
      for (int64_t k = 0; k < nt; ++k) {
        const double g = (L[k] - lam0) * inv;
        const double wk = g > cut ? 0.0 : exp_nonpositive(-g);
        ws += wk;
        if constexpr (Moments) wq += wk * wk;
        const double d0 = c0[k] - e0;
        double r2 = d0 * d0;
        a0 += wk * d0;
        if constexpr (DC > 1) {
          const double d1 = c1[k] - e1;
          r2 += d1 * d1;
          a1 += wk * d1;
        }
        if constexpr (DC > 2) {
          const double d2 = c2[k] - e2;
          r2 += d2 * d2;
          a2 += wk * d2;
        }
        if constexpr (Moments) sq += wk * r2;
      }
      S1[0] += a0;
      if (DC > 1) S1[1] += a1;
      if (DC > 2) S1[2] += a2;
    } else {  // weights, then one pass per dimension
      double* W = w.data();
#pragma omp simd reduction(+ : ws, wq)
      for (int64_t k = 0; k < nt; ++k) {
        double g = (L[k] - lam0) * inv;
        double wk = g > cut ? 0.0 : exp_nonpositive(-g);
        W[k] = wk;
        ws += wk;
        wq += wk * wk;
      }
      for (int64_t d = 0; d < D; ++d) {
        const double* col = tr.XT + d * tr.N + p0;
        const double cd = cc[d];
        double a1 = 0.0, a2 = 0.0;
#pragma omp simd reduction(+ : a1, a2)
        for (int64_t k = 0; k < nt; ++k) {
          double diff = col[k] - cd;
          double wd = W[k] * diff;
          a1 += wd;
          a2 += wd * diff;
        }
        S1[d] += a1;
        sq += a2;
      }
    }
    s.s0 += ws;
    s.q += wq;
    s.s2 += sq;
  }

  // Lookahead: lower hint[il] to this tile's smallest approximate lam plus its error bound.
  void gemm_hint(int64_t il, int64_t i, int64_t n0, int64_t nt) {
    const double alpha = q.alpha[i], xn2 = qt.xnorm2[il], a2 = alpha * alpha, m2a = -2.0 * alpha;
    const double two_s2 = 2.0 * q.sigma2[i];
    const T* Grow = qt.Gcur + il * kTrainTile;
    const double* nc2 = tr.norm2c + n0;
    const double* lw = tr.logw ? tr.logw + n0 : qt.zeros.data();
    double lmin = kInf;
#pragma omp simd reduction(min : lmin)
    for (int64_t k = 0; k < nt; ++k)
      lmin = std::min(lmin, xn2 + m2a * double(Grow[k]) + a2 * nc2[k] - two_s2 * lw[k]);
    hint[il] = std::min(hint[il], lmin + qt.tile_bound(il));
  }

  void gemm_tile_begin(int64_t nt) { std::fill(active.begin(), active.begin() + nt, 0); }

  // GEMM path: approximate lam with bounds, refine what matters (lam_row.hpp), weights into P.
  void gemm_row(int64_t il, int64_t i, int64_t n0, int64_t nt) {
    const double inv = inv_two_sigma2(q.sigma2[i]);
    double* L = qt.lam.data();
    int32_t* S = status.data();
    const double B = qt.tile_bound(il);
    QueryState& s = st[il];
    const double ub0 = std::min(s.lam, hint[il]);
    // (1) approximate lam. Entries above thr are beyond the cutoff even against the running
    // minimum: when none is below, the tile adds nothing (the common case at small sigma,
    // where this pass is all the per-entry work).
    int nin = 0;
    const double lmin_all =
        approx_lam_row(qt, il, i, n0, nt, L, ub0 + opt.cutoff / inv + B, nin);
    if (nin == 0) {
      s.wa = 0.0;
      return;
    }
    const double lam_ub = std::min(ub0, lmin_all + B);  // an upper bound on the true minimum
    const double cut = opt.cutoff;
    // (2) the refinement rule: classes in S (kSkip, kApprox, kExact, kRefined), exact lam
    // of the refined entries in L
    const RowRefinement rr = refine_row(qt, i, n0, nt, L, S, B, lam_ub, inv, opt);
    if (!rr.classified) {  // a spread posterior: no per-entry classes
      auto kept = [L, B, lam_ub, inv, cut](int64_t k) { return (L[k] - B - lam_ub) * inv <= cut; };
      const double lmin = rr.lmin - B < s.lam ? exact_minimum(i, n0, nt, L, rr.lmin, B) : rr.lmin;
      lower_minimum(il, n0, nt, lmin, inv, kept);
      approx_weights(il, n0, nt, inv, kept);
      return;
    }
    lower_minimum(il, n0, nt, rr.lmin, inv, [S](int64_t k) { return S[k] != kSkip; });
    // (3) weights: approximate ones into P (second GEMM); the exactly recomputed ones (over
    // the cap, and the dominant refined ones) accumulated directly in float64 about c. The
    // dominant ones carry most of the weight: through the float32 GEMM about the mean, moving
    // their sums to c would cancel (S1, S2 of a concentrated posterior lost ~1e-3 relative).
    approx_weights(il, n0, nt, inv, [S](int64_t k) { return S[k] == kApprox; });
    const double lam0 = s.lam;
    for_flagged(nt, [S](int64_t k) { return (S[k] == kExact) | (S[k] == kRefined); },
                [&](int64_t k) {
                  const double g = (L[k] - lam0) * inv;
                  if (g <= cut) add_exact(il, n0 + k, exp_nonpositive(-g));
                });
  }

  // The tile's exact smallest lam when it may lower the running minimum: the entries whose
  // approximate lam is within 2 B of the smallest approximate one, lmin_approx, are recomputed
  // exactly in L (any other's true lam exceeds lmin_approx + B, which the entry at lmin_approx
  // does not), so the centre and argmax are the exact ones also when near-ties are closer
  // than the bound (spread posteriors, whose rows are otherwise left approximate).
  double exact_minimum(int64_t i, int64_t n0, int64_t nt, double* L, double lmin_approx,
                       double B) {
    const double window = lmin_approx + 2.0 * B;
    double lmin = kInf;
    for_flagged(nt, [L, window](int64_t k) { return L[k] <= window; }, [&](int64_t k) {
      L[k] = qt.exact(i, n0 + k);
      lmin = std::min(lmin, L[k]);
    });
    return lmin;
  }

  // Lower the running minimum to lmin, the smallest lam of the tile's entries where on(k)
  // holds (at the lowest such index among ties).
  template <typename On>
  void lower_minimum(int64_t il, int64_t n0, int64_t nt, double lmin, double inv, On on) {
    if (!(lmin < st[il].lam)) return;
    const double* L = qt.lam.data();
    const int64_t kmin = first_flagged(nt, [&](int64_t k) { return on(k) & (L[k] == lmin); });
    if (kmin < nt) move_max(il, lmin, n0 + kmin, inv);
  }

  // The weights of the entries where on(k) holds, relative to the running minimum, into this
  // query's row of P for the weighted-sum GEMM, with their sums.
  template <typename On>
  void approx_weights(int64_t il, int64_t n0, int64_t nt, double inv, On on) {
    QueryState& s = st[il];
    const double* L = qt.lam.data();
    const double* nc2 = tr.norm2c + n0;
    T* Prow = &P[il * kLdP];
    int32_t* act = active.data();
    const double lam0 = s.lam, cut = opt.cutoff;
    double wa = 0.0, wa2 = 0.0, wq = 0.0;
    if constexpr (sizeof(T) == 4) {  // float weights from the float exp (16 lanes)
#pragma omp simd reduction(+ : wa, wa2, wq)
      for (int64_t k = 0; k < nt; ++k) {
        const double g = (L[k] - lam0) * inv;
        const float e = exp_nonpositive_f(-float(std::min(g, 100.0)));
        const T pk = (on(k) & (g <= cut)) ? e : 0.0f;
        Prow[k] = pk;
        act[k] |= pk != T(0);
        wa += double(pk);
        wa2 += double(pk) * nc2[k];
        wq += double(pk) * double(pk);
      }
    } else {
#pragma omp simd reduction(+ : wa, wa2, wq)
      for (int64_t k = 0; k < nt; ++k) {
        const double g = (L[k] - lam0) * inv;
        const double e = exp_nonpositive(-g);
        const T pk = (on(k) & (g <= cut)) ? e : 0.0;
        Prow[k] = pk;
        act[k] |= pk != T(0);
        wa += pk;
        wa2 += pk * nc2[k];
        wq += pk * pk;
      }
    }
    s.wa = wa;
    s.wa_norm2 = wa2;
    s.s0 += wa;
    s.q += wq;
  }

  // Fold this tile's GEMM-accumulated weights (sum_n w_n Xc_n) into the centred accumulators.
  void fold_approx(int64_t il) {
    QueryState& s = st[il];
    if (s.wa <= 0.0) return;
    double* S1 = &s1[il * D];
    const double* cc = &c[il * D];
    const T* px = &PX[il * Dpad];
    double cross = 0.0, cn2 = 0.0;
    for (int64_t d = 0; d < D; ++d) {
      double cp = cc[d] - tr.mu[d];  // c in centred coordinates
      S1[d] += double(px[d]) - s.wa * cp;
      cross += cp * double(px[d]);
      cn2 += cp * cp;
    }
    s.s2 += s.wa_norm2 - 2.0 * cross + s.wa * cn2;
    s.wa = 0.0;
    s.wa_norm2 = 0.0;
  }

  // The bulk add: weighted sums PX = P . Xc_tile (rows centred as they are packed) over the
  // training points and row blocks that carry approximate weight (leaving out all-zero k and
  // rows changes no bit, see packgemm.hpp).
  void gemm_tile_end(int64_t n0, int64_t nt) {
    const int64_t mt = qt.mt;
    const int nblk = int((mt + MR - 1) / MR);
    const T* Xt = tr.X + n0 * D;
    int nwb = 0;
    for (int b = 0; b < nblk; ++b) {
      bool any = false;
      for (int64_t il = b * MR; il < std::min<int64_t>(mt, (b + 1) * MR); ++il)
        any = any || st[il].wa > 0.0;
      if (any) wblocks[nwb++] = b;
    }
    if (nwb > 0) {
      int32_t na = 0;
      for (int64_t k = 0; k < nt; ++k)
        if (active[k]) idx[na++] = int32_t(k);
      pack_b_rows<T>(idx.data(), na, D, Xt, D, tr.mu, Bp.data());
      const T* Pd = P.data();
      const int32_t* ix = idx.data();
      gemm_packed<T>(wblocks.data(), nwb, Dpad / NR, na,
                     [Pd, ix](int32_t b) { return AIndexed<T>{Pd + int64_t(b) * MR * kLdP, kLdP, ix}; },
                     Bp.data(), PX.data(), Dpad);
      for (int64_t il = 0; il < mt; ++il) fold_approx(il);
    }
  }

  void finish(int64_t il, int64_t i, int64_t) {
    const QueryState& s = st[il];
    const double alpha = q.alpha[i], sigma2 = q.sigma2[i], inv = inv_two_sigma2(sigma2);
    const double* S1 = &s1[il * D];
    const double* cc = &c[il * D];
    const T* xi = q.x + i * D;
    double m2 = 0.0;  // its own loop: the same code (and bits) whatever else is requested
    for (int64_t d = 0; d < D; ++d) {
      const double m = S1[d] / s.s0;
      m2 += m * m;
    }
    for (int64_t d = 0; d < D; ++d) {
      double xh = cc[d] + S1[d] / s.s0;
      if (out.denoised) out.denoised[i * D + d] = T(xh);
      double r = alpha * xh - double(xi[d]);
      if (out.score) out.score[i * D + d] = T(r / sigma2);
      if (out.eps) out.eps[i * D + d] = T(-r / std::sqrt(sigma2));
    }
    if (out.logpdf) {
      const double log_two_pi = 1.8378770664093453;  // log(2 pi sigma^2) without overflow
      out.logpdf[i] = -s.lam * inv + std::log(s.s0) - logsumw -
                      0.5 * double(D) * (log_two_pi + std::log(sigma2));
    }
    if (out.tau2) out.tau2[i] = std::max(0.0, s.s2 / s.s0 - m2);
    if (out.max_weight) out.max_weight[i] = 1.0 / s.s0;
    if (out.argmax) out.argmax[i] = tr.row_offset + s.best;
    if (out.n_eff) out.n_eff[i] = s.s0 * s.s0 / s.q;
    if (out.lam_min) out.lam_min[i] = s.lam;
    if (out.s0) out.s0[i] = s.s0;
    if (out.sum_w2) out.sum_w2[i] = s.q;
    if (out.s2) out.s2[i] = s.s2;
    if (out.s1) std::copy(S1, S1 + D, out.s1 + i * D);
    if (out.centre) std::copy(cc, cc + D, out.centre + i * D);
  }

};

// The statistics of M queries (mixscore/engine.hpp, run_engine).
template <typename T>
bool run(const TrainSet<T>& tr, const Queries<T>& q, const Outputs<T>& out,
         const EngineOptions& opt, const StopFn& should_stop) {
  // Entries more than log N + margin nats below the maximum carry a total relative weight below
  // e^-margin (2e-9 for float32, 4e-18 for float64): far below the output's rounding. The
  // float32 margin lets the weighted-sum GEMM skip most of a spread-out posterior's tail.
  typename PosteriorHandler<T>::Shared shared{out, tr.logw_sum, opt};
  shared.opt.cutoff =
      std::min(opt.cutoff, std::log(double(tr.global_n)) + (sizeof(T) == 4 ? 20.0 : 40.0));
  return drive<PosteriorHandler<T>>(tr, q, shared, opt.num_threads, should_stop);
}

}  // namespace MIXSCORE_ISA
}  // namespace mixscore
