// One query's lam over one GEMM training tile, shared by the handlers that weight entries by
// the posterior (posterior.hpp, draws.hpp):
//   (1) approximate lam from the expansion (bound.hpp gives its rigorous error B per tile),
//   (2) the refinement rule: entries whose bound exceeds approx_cap nats are recomputed
//       exactly (exact.hpp, QueryTile::exact); below the cap, the entries within dominant_gap
//       of the running maximum when a tile holds at most refine_budget of them and the bound
//       exceeds refine_tol (EngineOptions documents the rule).
// With lam_n = |x - alpha X_n|^2 - 2 sigma^2 log pi_n and weights exp(-(lam - Lambda)/(2 s^2)).
#pragma once
#include "driver.hpp"

namespace mixscore {
namespace MIXSCORE_ISA {

// Entry classes: kSkip (beyond the cutoff), kApprox (approximate lam), kRefined (exact lam of
// a dominant entry), kExact (exact lam because the bound exceeds the cap: the small-sigma
// regime, where the posterior handler also accumulates these in float64).
enum : int32_t { kSkip = 0, kApprox = 1, kExact = 2, kDominant = 3, kRefined = 4 };

// 1 / (2 sigma^2), capped: sigma -> 0 is a hard assignment, never inf * 0.
inline double inv_two_sigma2(double sigma2) {
  const double v = 0.5 / sigma2;
  return (v <= 1e300) ? v : 1e300;
}

// Whether the precise product pays for a query (driver.hpp): the plain product's bound
// (nats) is over the cap, so every entry within the cutoff would be refined (the
// intermediate-noise slow band), and the precise product's is not.
inline bool precise_product_pays(double plain, double precise, double inv, double cap) {
  return plain * inv > cap && precise * inv <= cap;
}

// (1) The approximate lam of query il (global i) over the current tile [n0, n0 + nt) into L;
// nin counts the entries not above thr. Returns the smallest approximate lam.
template <typename T>
inline double approx_lam_row(const QueryTile<T>& qt, int64_t il, int64_t i, int64_t n0,
                             int64_t nt, double* L, double thr, int& nin) {
  const TrainSet<T>& tr = qt.tr;
  const double alpha = qt.q.alpha[i], two_s2 = 2.0 * qt.q.sigma2[i];
  const double xn2 = qt.xnorm2[il], a2 = alpha * alpha, m2a = -2.0 * alpha;
  const T* Grow = qt.Gcur + il * kTrainTile;
  const double* nc2 = tr.norm2c + n0;
  const double* lw = tr.logw ? tr.logw + n0 : nullptr;
  int cnt = 0;
  double lmin_all = kInf;
  if (lw) {
#pragma omp simd reduction(+ : cnt) reduction(min : lmin_all)
    for (int64_t k = 0; k < nt; ++k) {
      double lk = xn2 + m2a * double(Grow[k]) + a2 * nc2[k] - two_s2 * lw[k];
      L[k] = lk;
      cnt += lk <= thr;
      lmin_all = std::min(lmin_all, lk);
    }
  } else {
#pragma omp simd reduction(+ : cnt) reduction(min : lmin_all)
    for (int64_t k = 0; k < nt; ++k) {
      double lk = xn2 + m2a * double(Grow[k]) + a2 * nc2[k];
      L[k] = lk;
      cnt += lk <= thr;
      lmin_all = std::min(lmin_all, lk);
    }
  }
  nin = cnt;
  return lmin_all;
}

// What the refinement rule did to a tile row.
struct RowRefinement {
  bool classified = false;  // false: no class array written, every kept entry approximate
  int nmust = 0;            // entries refined because the bound exceeds the cap (kExact)
  double lmin = kInf;       // the smallest lam of the kept entries, after refinement
};

// (2) The refinement rule on L (from approx_lam_row) for query il, global i, with tile bound
// B, lam_ub an upper bound on the query's final minimum and inv = 1 / (2 sigma^2). An entry is
// kept when the lower bound on its true gap, (L - B - lam_ub) inv nats, is within the cutoff.
// A spread posterior (bound below the cap, no or too many dominant entries) needs no classes;
// otherwise S gets each entry's class and the refined entries their exact lam in L.
template <typename T>
inline RowRefinement refine_row(const QueryTile<T>& qt, int64_t i, int64_t n0, int64_t nt,
                                double* L, int32_t* S, double B, double lam_ub, double inv,
                                const EngineOptions& opt) {
  const double cut = opt.cutoff, tol = opt.refine_tol, cap = opt.approx_cap,
               dom = opt.dominant_gap;
  const double e = B * inv;  // error bound of the tile's lam, nats
  const int must_all = e > cap, dom_ok = (e > tol) & (e <= cap);
  RowRefinement r;
  if (!must_all) {  // the counts and minimum of the classification below, without classes
    int ndom = 0;
    double lmin = kInf;
#pragma omp simd reduction(+ : ndom) reduction(min : lmin)
    for (int64_t k = 0; k < nt; ++k) {
      const double lk = L[k];
      const double gap_lo = (lk - B - lam_ub) * inv;
      const int in = gap_lo <= cut;
      const int d = in & (gap_lo <= dom) & dom_ok;
      ndom += d;
      lmin = std::min(lmin, in ? lk : kInf);
    }
    if (ndom == 0 || ndom > opt.refine_budget) {
      r.lmin = lmin;
      return r;
    }
  }
  // classify: skip (beyond cutoff), approx, must refine (bound over the cap), dominant; and
  // the minimum over the entries kept.
  int ndom = 0, nmust = 0;
  double lmin = kInf;
#pragma omp simd reduction(+ : ndom, nmust) reduction(min : lmin)
  for (int64_t k = 0; k < nt; ++k) {
    const double lk = L[k];
    const double gap_lo = (lk - B - lam_ub) * inv;  // lower bound on the true gap, nats
    const int in = gap_lo <= cut;
    const int must = in & must_all;
    const int d = in & (gap_lo <= dom) & dom_ok;
    S[k] = in * kApprox + must * (kExact - kApprox) + d * (kDominant - kApprox);
    ndom += d;
    nmust += must;
    lmin = std::min(lmin, in ? lk : kInf);
  }
  const bool refine_dominant = ndom > 0 && ndom <= opt.refine_budget;
  if (ndom > 0) {
    const int32_t to = refine_dominant ? kRefined : kApprox;
#pragma omp simd
    for (int64_t k = 0; k < nt; ++k) S[k] = S[k] == kDominant ? to : S[k];
  }
  if (nmust > 0 || refine_dominant) {
    for_flagged(nt, [S](int64_t k) { return (S[k] == kExact) | (S[k] == kRefined); },
                [&](int64_t k) { L[k] = qt.exact(i, n0 + k); });
    lmin = kInf;  // the refined values change the minimum
#pragma omp simd reduction(min : lmin)
    for (int64_t k = 0; k < nt; ++k) {
      const double lk = L[k];  // unconditional load: lets the compiler vectorize
      lmin = std::min(lmin, S[k] != kSkip ? lk : kInf);
    }
  }
  r.classified = true;
  r.nmust = nmust;
  r.lmin = lmin;
  return r;
}

}  // namespace MIXSCORE_ISA
}  // namespace mixscore
