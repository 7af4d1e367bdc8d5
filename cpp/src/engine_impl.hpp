// The streaming engine, compiled once per instruction set (see engine_variant.cpp).
//
// For each tile of queries (one OpenMP thread each) and each tile of training points (fixed
// order), the penalized squared distance
//     lam_n = |x - alpha X_n|^2 - 2 sigma^2 log pi_n       (logit l_n = -lam_n / (2 sigma^2))
// is either computed directly in float64 (small D: spatially compact tiles, whole tiles beyond
// the cutoff left out after a bounding-box test) or expanded around the training mean,
//     lam_n ~ |x'|^2 - 2 alpha x'.Xc_n + alpha^2 |Xc_n|^2 - 2 sigma^2 log pi_n,
// with the dot products from one GEMM per tile pair and a rigorous bound on their error. Entries
// whose bound matters are recomputed from direct float64 differences ("refined"). Weights
// e^{-(lam - Lambda)/(2 sigma^2)} relative to the running minimum Lambda feed online accumulators
// centred on the current best training point c (S0, sum w^2, S1 = sum w (X - c),
// S2 = sum w |X - c|^2); approximate weights go through a second GEMM P * Xc.
// Each query is handled by one thread in a fixed order, so results do not depend on the
// number of threads or on how queries are split into calls.
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <type_traits>
#include <vector>

#include <omp.h>

#include "mixscore/bound.hpp"
#include "mixscore/engine.hpp"
#include "mixscore/exact.hpp"
#include "mixscore/fastexp.hpp"
#include "mixscore/packgemm.hpp"

namespace mixscore {
namespace MIXSCORE_ISA {

constexpr int64_t kQueryTile = 128;   // fixed GEMM shape: results independent of batch split
constexpr int64_t kLdP = kTrainTile + 16;  // P's row stride, padded against L1 set aliasing
// When a query tile's logits for the whole training set fit in this many bytes (N <= 32768
// for float32), the logit GEMM runs over all training tiles first and every query gets an
// upper bound on its final minimum before any weight is formed: a spread-out posterior then
// skips the tiles that only looked relevant against an early, poor running minimum (the
// weighted-sum GEMM and the exps they cost). Same GEMM work, 16 MiB per thread at most.
// Below kLookaheadMinD the stored dot products cost more memory traffic than the GEMM
// (measured at D = 64: 0.235 s without, 0.27-0.30 s with, one thread, t = 0.5).
constexpr int64_t kLookaheadBytes = int64_t(16) << 20;
constexpr int64_t kLookaheadMinD = 128;
constexpr double kInf = std::numeric_limits<double>::infinity();

// Entry classes: kSkip (beyond the cutoff), kApprox (weight through the P GEMM),
// kRefined (exact logit, weight through the P GEMM), kExact (exact logit and float64
// accumulation about c: the small-sigma regime, where the posterior variance needs it).
enum : int32_t { kSkip = 0, kApprox = 1, kExact = 2, kDominant = 3, kRefined = 4 };

struct QueryState {
  double lam = kInf;  // running minimum of lam (maximum logit)
  double s0 = 0, q = 0, s2 = 0;
  int64_t best = -1;  // index of the running argmax: the shift point c
  double wa = 0, wa_norm2 = 0;  // this tile's approximate weights: sum w, sum w |Xc|^2
};

// Calls f(k), in increasing k, for the k in [0, n) where pred(k) holds. The flagged entries are
// few: groups of 16 without one are passed over by a single vectorized test.
template <typename Pred, typename F>
inline void for_flagged(int64_t n, Pred pred, F f) {
  for (int64_t k0 = 0; k0 < n; k0 += 16) {
    const int64_t k1 = std::min(n, k0 + 16);
    int any = 0;
#pragma omp simd reduction(| : any)
    for (int64_t k = k0; k < k1; ++k) any |= int(pred(k));
    if (any)
      for (int64_t k = k0; k < k1; ++k)
        if (pred(k)) f(k);
  }
}

// The first k in [0, n) where pred(k) holds (n if none).
template <typename Pred>
inline int64_t first_flagged(int64_t n, Pred pred) {
  int64_t found = n;
  for_flagged(n, pred, [&found](int64_t k) { found = std::min(found, k); });
  return found;
}

template <typename T>
struct Worker {
  const TrainSet<T>& tr;
  const Queries<T>& q;
  const EngineOptions& opt;
  const int64_t D;
  const bool direct;
  static constexpr int MR = Blocking<T>::MR, NR = Blocking<T>::NR;
  const int64_t Dpad;  // D rounded up to whole GEMM panels (row stride of PX)
  // thread-local buffers
  std::vector<T> xq;
  AlignedVector<T> Ap, Bp, G, P, PX;  // packed queries, packed training panels, GEMM tiles
  std::vector<double> xd, xnorm2, lam, w, s1, c, zeros;
  std::vector<int32_t> status, active, idx, blocks, wblocks;
  std::vector<QueryState> st;
  std::vector<ExpansionBound> bnd;  // each query's bound of the GEMM expansion
  std::vector<double> lanes;  // direct path: the exact routine's 8 lane buffers
  int nblk = 0;  // row blocks holding this tile's queries
  double tile_ncmax = 0;  // largest |Xc_n| in the current training tile
  const T* Gcur = nullptr;  // the current tile's logit dot products (row stride kTrainTile)
  AlignedVector<T> Gall;    // lookahead: all tiles' dot products for this query tile
  std::vector<double> hint;  // lookahead: an upper bound on each query's final minimum
  std::vector<uint64_t> keep_tile;  // direct path: [query][tile] bits, the tiles visited
  std::vector<double> box_lb;   // direct path: each tile's box lower bound, one query
  double mu_norm = 0;  // |mu|

  Worker(const TrainSet<T>& tr_, const Queries<T>& q_, const EngineOptions& o)
      : tr(tr_), q(q_), opt(o), D(tr_.D), direct(tr_.D < kDirectMaxD),
        Dpad((tr_.D + NR - 1) / NR * NR) {
    for (int64_t d = 0; d < D; ++d) mu_norm += tr_.mu[d] * tr_.mu[d];
    mu_norm = std::sqrt(mu_norm);
    const int64_t QT = kQueryTile, NT = kTrainTile;
    xd.resize(QT * D);
    xnorm2.resize(QT);
    lam.resize(NT);
    w.resize(NT);
    zeros.assign(NT, 0.0);
    status.resize(NT);
    s1.resize(QT * D);
    c.resize(QT * D);
    st.resize(QT);
    bnd.resize(QT);
    if (direct) {
      const int64_t ntiles = (tr_.N + kDirectTile - 1) / kDirectTile;
      keep_tile.resize(QT * ((ntiles + 63) / 64));
      box_lb.resize(ntiles);
      lanes.resize(8 * kDirectTile);
    } else {
      hint.resize(QT);
    }
    if (!direct) {
      xq.resize(QT * D);
      Ap.resize(QT * D);
      Bp.resize(NT * Dpad);
      G.resize(QT * NT);
      P.assign(QT * kLdP, T(0));
      PX.resize(QT * Dpad);
      active.resize(NT);
      idx.resize(NT);
      blocks.resize(QT / MR);
      if (tr_.D >= kLookaheadMinD && tr_.N * QT * int64_t(sizeof(T)) <= kLookaheadBytes)
        Gall.resize(((tr_.N + NT - 1) / NT) * QT * NT);
      wblocks.resize(QT / MR);
    }
  }

  static double inv2s2(double sigma2) {
    double v = 0.5 / sigma2;
    return (v <= 1e300) ? v : 1e300;  // sigma -> 0: hard assignment, never inf * 0
  }

  // Exact lam_n (exact.hpp) from the original data.
  double exact(int64_t i, int64_t n, double alpha, double sigma2) const {
    return exact_lam(q.x + i * D, tr.X + n * D, alpha, D,
                     tr.logw ? 2.0 * sigma2 * tr.logw[n] : 0.0);
  }

  // Lower the running minimum to (lam_new, idx): rescale and re-centre the accumulators.
  void move_max(int64_t il, double lam_new, int64_t idx, double inv) {
    QueryState& s = st[il];
    double* S1 = &s1[il * D];
    double* cc = &c[il * D];
    if (s.best >= 0 && s.s0 > 0) {
      double f = exp_nonpositive(-(s.lam - lam_new) * inv);
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

  // Direct path (D < kDirectMaxD), on the tiled layout of direct_layout.hpp: lam of the
  // points at tile positions [p0, p0 + nt) into L, with the bits of the exact row routine
  // (exact.hpp); returns their minimum. DC = D for D <= 3 (one fused pass), else 0.
  template <int DC>
  double direct_lam(int64_t il, int64_t i, int64_t p0, int64_t nt, double* L) {
    // without weights the log-weight term is 0 * 0 (2 sigma^2 may overflow: never inf * 0)
    const double tws = tr.logw_tiled ? 2.0 * q.sigma2[i] : 0.0;
    const double* lw = tr.logw_tiled ? tr.logw_tiled + p0 : zeros.data();
    return exact_lam_columns<DC>(&xd[il * D], q.alpha[i], tr.XT + p0, tr.N, nt, D, tws, lw,
                                 lanes.data(), zeros.data(), L);
  }

  // A lower bound on lam over direct tile t, as direct_lam computes it: the squared distance
  // from x to the tile's scaled bounding box, less the largest log-weight term. Rounding is
  // monotone, so fl(alpha X) stays in the rounded box; as a margin each distance still gives up
  // 2^-52 of the box's scale and the sum a relative 1e-12.
  double box_lower_bound(int64_t il, int64_t i, int64_t t) const {
    const double alpha = q.alpha[i];
    const double* b = tr.box + t * (2 * D + 1);
    const double* xi = &xd[il * D];
    double acc = 0.0;
    for (int64_t d = 0; d < D; ++d) {
      const double e0 = alpha * b[d], e1 = alpha * b[D + d], x = xi[d];
      const double lo = std::min(e0, e1), hi = std::max(e0, e1);  // alpha may be negative
      const double v = x < lo ? lo - x : (x > hi ? x - hi : 0.0);
      const double s = std::max(0.0, v - 0x1p-52 * std::max(std::abs(lo), std::abs(hi)));
      acc += s * s;
    }
    acc *= 1.0 - 1e-12;
    return tr.logw_tiled ? acc - 2.0 * q.sigma2[i] * b[2 * D] : acc;
  }

  // Before the tile loop, which direct tiles query il needs: all of them, unless the boxes are
  // spread over more than the cutoff; then those whose box lower bound is within the cutoff of
  // hint, the exact minimum over the tile whose box is nearest (an upper bound on the final
  // minimum): the others hold only points beyond the cutoff from the final maximum.
  void direct_keep(int64_t il, int64_t i) {
    const int64_t ntiles = (tr.N + kDirectTile - 1) / kDirectTile, words = (ntiles + 63) / 64;
    uint64_t* keep = &keep_tile[il * words];
    double* lb = box_lb.data();
    int64_t best = 0;
    double lb_far = -kInf;
    for (int64_t t = 0; t < ntiles; ++t) {
      lb[t] = box_lower_bound(il, i, t);
      if (lb[t] < lb[best]) best = t;
      lb_far = std::max(lb_far, lb[t]);
    }
    const double inv = inv2s2(q.sigma2[i]), cut = opt.cutoff;
    std::fill(keep, keep + words, ~uint64_t(0));
    if (!((lb_far - lb[best]) * inv > cut)) return;  // nothing can be left out (hint >= lb)
    const int64_t p0 = best * kDirectTile, nt = std::min(kDirectTile, tr.N - p0);
    const double hint =
        with_fixed_d([&](auto dc) { return direct_lam<dc.value>(il, i, p0, nt, lam.data()); });
    for (int64_t t = 0; t < ntiles; ++t)
      if (t != best && (lb[t] - hint) * inv > cut) keep[t / 64] &= ~(uint64_t(1) << (t % 64));
  }

  // Calls f(std::integral_constant<int, DC>) with DC = D for D <= 3 and 0 otherwise.
  template <typename F>
  auto with_fixed_d(F f) const {
    switch (D) {
      case 1: return f(std::integral_constant<int, 1>{});
      case 2: return f(std::integral_constant<int, 2>{});
      case 3: return f(std::integral_constant<int, 3>{});
      default: return f(std::integral_constant<int, 0>{});
    }
  }

  // Lower the running minimum to the tile's minimum lmin (L holds the tile's lam), or move the
  // centre to an equal minimum with a lower original index: ties go to the lowest index.
  void take_min(int64_t il, int64_t p0, int64_t nt, double lmin, double inv) {
    QueryState& s = st[il];
    if (lmin > s.lam) return;
    const double* L = lam.data();
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
  void direct_row(int64_t il, int64_t i, int64_t p0, int64_t nt) {
    const double inv = inv2s2(q.sigma2[i]);
    double* L = lam.data();
    take_min(il, p0, nt, direct_lam<DC>(il, i, p0, nt, L), inv);
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

  // All direct tiles for the query tile, in fixed order, leaving out those beyond the cutoff.
  template <int DC, bool Moments>
  bool direct_tiles(int64_t i0, int64_t mt, const std::atomic<bool>& stop, const StopFn* poll) {
    const int64_t words = ((tr.N + kDirectTile - 1) / kDirectTile + 63) / 64;
    for (int64_t il = 0; il < mt; ++il) direct_keep(il, i0 + il);
    for (int64_t p0 = 0, t = 0; p0 < tr.N; p0 += kDirectTile, ++t) {
      if (poll && *poll && (*poll)()) return false;
      if (stop.load(std::memory_order_relaxed)) return false;
      const int64_t nt = std::min(kDirectTile, tr.N - p0);
      for (int64_t il = 0; il < mt; ++il)
        if (keep_tile[il * words + t / 64] >> (t % 64) & 1)
          direct_row<DC, Moments>(il, i0 + il, p0, nt);
    }
    return true;
  }

  // Rigorous error bound of every approximate lam in the current tile (bound.hpp, at the
  // tile's largest |Xc|).
  double tile_bound(int64_t il, double alpha) const { return bnd[il](std::abs(alpha) * tile_ncmax); }

  // Lookahead: lower hint[il] to this tile's smallest approximate lam plus its error bound.
  void update_hint(int64_t il, int64_t i, int64_t n0, int64_t nt) {
    const double alpha = q.alpha[i], xn2 = xnorm2[il], a2 = alpha * alpha, m2a = -2.0 * alpha;
    const double two_s2 = 2.0 * q.sigma2[i];
    const T* Grow = Gcur + il * kTrainTile;
    const double* nc2 = tr.norm2c + n0;
    const double* lw = tr.logw ? tr.logw + n0 : zeros.data();
    double lmin = kInf;
#pragma omp simd reduction(min : lmin)
    for (int64_t k = 0; k < nt; ++k)
      lmin = std::min(lmin, xn2 + m2a * double(Grow[k]) + a2 * nc2[k] - two_s2 * lw[k]);
    hint[il] = std::min(hint[il], lmin + tile_bound(il, alpha));
  }

  // The logit GEMM for one training tile: Gout = xq . Xc_tile^T (the tile packed once, in
  // the prepared training set).
  void logits(int64_t n0, int64_t nt, T* Gout) {
    tile_ncmax = *std::max_element(tr.normc + n0, tr.normc + n0 + nt);
    const T* ApD = Ap.data();
    const int64_t D_ = D;
    gemm_packed<T>(blocks.data(), nblk, (nt + NR - 1) / NR, D,
                   [ApD, D_](int32_t b) { return APacked<T>{ApD + int64_t(b) * D_ * MR}; },
                   tr.packed + n0 * D, Gout, kTrainTile);
    Gcur = Gout;
  }

  // GEMM path: approximate lam with bounds, refine what matters, weights into P.
  void gemm_row(int64_t il, int64_t i, int64_t n0, int64_t nt) {
    const double alpha = q.alpha[i], sigma2 = q.sigma2[i], inv = inv2s2(sigma2);
    const double xn2 = xnorm2[il];
    const T* Grow = Gcur + il * kTrainTile;
    double* L = lam.data();
    int32_t* S = status.data();
    const double* nc2 = tr.norm2c + n0;
    const double* lw = tr.logw ? tr.logw + n0 : nullptr;
    const double a2 = alpha * alpha, two_s2 = 2.0 * sigma2;
    const double B = tile_bound(il, alpha);
    QueryState& s = st[il];
    const double ub0 = std::min(s.lam, hint[il]);
    // (1) approximate lam. Entries above thr are beyond the cutoff even against the running
    // minimum: when none is below, the tile adds nothing (the common case at small sigma,
    // where this pass is all the per-entry work).
    const double thr = ub0 + opt.cutoff / inv + B;
    int nin = 0;
    double lmin_all = kInf;
    const double m2a = -2.0 * alpha;
    if (lw) {
#pragma omp simd reduction(+ : nin) reduction(min : lmin_all)
      for (int64_t k = 0; k < nt; ++k) {
        double lk = xn2 + m2a * double(Grow[k]) + a2 * nc2[k] - two_s2 * lw[k];
        L[k] = lk;
        nin += lk <= thr;
        lmin_all = std::min(lmin_all, lk);
      }
    } else {
#pragma omp simd reduction(+ : nin) reduction(min : lmin_all)
      for (int64_t k = 0; k < nt; ++k) {
        double lk = xn2 + m2a * double(Grow[k]) + a2 * nc2[k];
        L[k] = lk;
        nin += lk <= thr;
        lmin_all = std::min(lmin_all, lk);
      }
    }
    if (nin == 0) {
      s.wa = 0.0;
      return;
    }
    const double lam_ub = std::min(ub0, lmin_all + B);  // an upper bound on the true minimum
    const double cut = opt.cutoff, tol = opt.refine_tol, cap = opt.approx_cap,
                 dom = opt.dominant_gap;
    const double e = B * inv;  // error bound of the tile's lam, nats
    const int must_all = e > cap, dom_ok = (e > tol) & (e <= cap);
    // An entry is kept when the lower bound on its true gap, (lk - B - lam_ub) inv nats, is
    // within the cutoff.
    auto kept = [L, B, lam_ub, inv, cut](int64_t k) { return (L[k] - B - lam_ub) * inv <= cut; };
    if (!must_all) {  // a spread posterior needs no refinement: no per-entry classes
      int ndom = 0;  // the counts and minimum of the classification below, without classes
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
        lower_minimum(il, n0, nt, lmin, inv, kept);
        approx_weights(il, n0, nt, inv, kept);
        return;
      }
    }
    // (2) classify: skip (beyond cutoff), approx, must refine (bound over the cap), dominant;
    // and the minimum over the entries kept.
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
                  [&](int64_t k) { L[k] = exact(i, n0 + k, alpha, sigma2); });
      lmin = kInf;  // (3) the refined values change the minimum
#pragma omp simd reduction(min : lmin)
      for (int64_t k = 0; k < nt; ++k) {
        const double lk = L[k];  // unconditional load: lets the compiler vectorize
        lmin = std::min(lmin, S[k] != kSkip ? lk : kInf);
      }
    }
    lower_minimum(il, n0, nt, lmin, inv, [S](int64_t k) { return S[k] != kSkip; });
    // (4) weights: approximate ones into P (second GEMM), exact ones accumulated directly.
    approx_weights(il, n0, nt, inv,
                   [S](int64_t k) { return (S[k] == kApprox) | (S[k] == kRefined); });
    if (nmust > 0) {  // exact entries: float64 weights accumulated about c
      const double lam0 = s.lam;
      for_flagged(nt, [S](int64_t k) { return S[k] == kExact; }, [&](int64_t k) {
        const double g = (L[k] - lam0) * inv;
        if (g <= cut) add_exact(il, n0 + k, exp_nonpositive(-g));
      });
    }
  }

  // Lower the running minimum to lmin, the smallest lam of the tile's entries where on(k)
  // holds (at the lowest such index among ties).
  template <typename On>
  void lower_minimum(int64_t il, int64_t n0, int64_t nt, double lmin, double inv, On on) {
    if (!(lmin < st[il].lam)) return;
    const double* L = lam.data();
    const int64_t kmin = first_flagged(nt, [&](int64_t k) { return on(k) & (L[k] == lmin); });
    if (kmin < nt) move_max(il, lmin, n0 + kmin, inv);
  }

  // The weights of the entries where on(k) holds, relative to the running minimum, into this
  // query's row of P for the weighted-sum GEMM, with their sums.
  template <typename On>
  void approx_weights(int64_t il, int64_t n0, int64_t nt, double inv, On on) {
    QueryState& s = st[il];
    const double* L = lam.data();
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

  void finalize(int64_t il, int64_t i, const Outputs<T>& out, double logsumw) {
    const QueryState& s = st[il];
    const double alpha = q.alpha[i], sigma2 = q.sigma2[i], inv = inv2s2(sigma2);
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

  // One tile of queries against the whole training set. Returns false if stopped.
  bool run_tile(int64_t i0, int64_t mt, const Outputs<T>& out, double logsumw,
                const std::atomic<bool>& stop, const StopFn* poll) {
    for (int64_t il = 0; il < kQueryTile; ++il) {
      st[il] = QueryState{};
      std::fill(&s1[il * D], &s1[il * D] + D, 0.0);
      if (il >= mt) {
        if (!direct) std::fill(&xq[il * D], &xq[il * D] + D, T(0));
        continue;
      }
      const int64_t i = i0 + il;
      const double alpha = q.alpha[i];
      double n2 = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        double xv = double(q.x[i * D + d]);
        xd[il * D + d] = xv;
        double xc = xv - alpha * tr.mu[d];
        n2 += xc * xc;
        if (!direct) xq[il * D + d] = T(xc);
      }
      xnorm2[il] = n2;
      bnd[il] = ExpansionBound::make(std::sqrt(n2), std::abs(alpha) * mu_norm, D,
                                     std::numeric_limits<T>::epsilon() / 2);
    }
    if (direct) {
      const bool done = out.wants_moments() ? with_fixed_d([&](auto dc) {
        return direct_tiles<dc.value, true>(i0, mt, stop, poll);
      }) : with_fixed_d([&](auto dc) { return direct_tiles<dc.value, false>(i0, mt, stop, poll); });
      if (!done) return false;
      for (int64_t il = 0; il < mt; ++il) finalize(il, i0 + il, out, logsumw);
      return true;
    }
    // GEMM path: queries packed once per tile; only blocks holding queries are computed
    nblk = int((mt + MR - 1) / MR);
    for (int b = 0; b < nblk; ++b) blocks[b] = b;
    pack_a<T>(nblk, D, xq.data(), D, Ap.data());
    std::fill(hint.begin(), hint.end(), kInf);
    const bool lookahead = !Gall.empty();
    if (lookahead)  // all logit GEMMs first: each query's minimum is bounded before weighting
      for (int64_t n0 = 0; n0 < tr.N; n0 += kTrainTile) {
        if (poll && *poll && (*poll)()) return false;
        if (stop.load(std::memory_order_relaxed)) return false;
        const int64_t nt = std::min(kTrainTile, tr.N - n0);
        logits(n0, nt, Gall.data() + (n0 / kTrainTile) * kQueryTile * kTrainTile);
        for (int64_t il = 0; il < mt; ++il) update_hint(il, i0 + il, n0, nt);
      }
    for (int64_t n0 = 0; n0 < tr.N; n0 += kTrainTile) {
      if (poll && *poll && (*poll)()) return false;
      if (stop.load(std::memory_order_relaxed)) return false;
      const int64_t nt = std::min(kTrainTile, tr.N - n0);
      const T* Xt = tr.Xc + n0 * D;
      if (lookahead) {
        tile_ncmax = *std::max_element(tr.normc + n0, tr.normc + n0 + nt);
        Gcur = Gall.data() + (n0 / kTrainTile) * kQueryTile * kTrainTile;
      } else {
        logits(n0, nt, G.data());
      }
      std::fill(active.begin(), active.begin() + nt, 0);
      for (int64_t il = 0; il < mt; ++il) gemm_row(il, i0 + il, n0, nt);
      // weighted sums PX = P . Xc_tile over the training points and row blocks that carry
      // approximate weight (leaving out all-zero k and rows changes no bit, see packgemm.hpp)
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
        pack_b_rows<T>(idx.data(), na, D, Xt, D, Bp.data());
        const T* Pd = P.data();
        const int32_t* ix = idx.data();
        gemm_packed<T>(wblocks.data(), nwb, Dpad / NR, na,
                       [Pd, ix](int32_t b) { return AIndexed<T>{Pd + int64_t(b) * MR * kLdP, kLdP, ix}; },
                       Bp.data(), PX.data(), Dpad);
        for (int64_t il = 0; il < mt; ++il) fold_approx(il);
      }
    }
    for (int64_t il = 0; il < mt; ++il) finalize(il, i0 + il, out, logsumw);
    return true;
  }
};

template <typename T>
bool run(const TrainSet<T>& tr, const Queries<T>& q, const Outputs<T>& out,
         const EngineOptions& opt, const StopFn& should_stop) {
  const double logsumw = tr.logw_sum;
  // Entries more than log N + margin nats below the maximum carry a total relative weight below
  // e^-margin (2e-9 for float32, 4e-18 for float64): far below the output's rounding. The
  // float32 margin lets the weighted-sum GEMM skip most of a spread-out posterior's tail.
  EngineOptions o = opt;
  o.cutoff = std::min(opt.cutoff, std::log(double(tr.global_n)) + (sizeof(T) == 4 ? 20.0 : 40.0));
  const int64_t ntiles = (q.M + kQueryTile - 1) / kQueryTile;
  std::atomic<bool> stop{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  const int nthreads = opt.num_threads > 0 ? opt.num_threads : omp_get_max_threads();
#pragma omp parallel num_threads(nthreads)
  {
    const bool first = omp_get_thread_num() == 0;
    try {
      Worker<T> worker(tr, q, o);
#pragma omp for schedule(dynamic, 1)
      for (int64_t tile = 0; tile < ntiles; ++tile) {
        if (stop.load(std::memory_order_relaxed)) continue;
        const int64_t i0 = tile * kQueryTile;
        const int64_t mt = std::min(kQueryTile, q.M - i0);
        if (!worker.run_tile(i0, mt, out, logsumw, stop, first ? &should_stop : nullptr))
          stop.store(true);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      stop.store(true);
    }
  }
  if (error) std::rethrow_exception(error);
  return !stop.load();
}

}  // namespace MIXSCORE_ISA
}  // namespace mixscore
