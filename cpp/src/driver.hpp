// The one streaming driver, compiled once per instruction set (variant.cpp). Every hot path --
// the posterior statistics (posterior.hpp), the nearest search (topk.hpp) and through the
// statistics the fused sampler -- is this loop with a different reduction handler:
//
//   for each tile of queries (OpenMP, dynamic schedule; results never depend on the split):
//     handler.begin(tile)
//     for each tile of training points (fixed order), unless handler.cut(query) excludes it:
//       tile source: D >= kDirectMaxD: the GEMM expansion about the training mean (the tiles
//         packed once in the prepared set, bound.hpp for its rigorous error; the precise
//         product for query tiles where handler.precise_pays), lam given to
//         handler.gemm_row, which refines what its rule needs through QueryTile::exact;
//         D < kDirectMaxD: exact lam from direct float64 differences (exact.hpp, column
//         routine) on spatially compact tiles, whole tiles left out when their bounding box is
//         beyond handler.cut; lam given to handler.direct_tile
//       handler.gemm_tile_end (the bulk add: the posterior's weighted-sum GEMM)
//     handler.finish(query) writes the outputs (or a partial state)
// The driver also owns stop/poll (Ctrl-C), exception capture and, for handlers whose states
// merge (the top-k), a split of the training set when there are fewer query tiles than threads.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include <omp.h>

#include "mixscore/bound.hpp"
#include "mixscore/engine.hpp"
#include "mixscore/exact.hpp"
#include "mixscore/packgemm.hpp"
#include "mixscore/threads.hpp"

namespace mixscore {
namespace MIXSCORE_ISA {

constexpr double kInf = std::numeric_limits<double>::infinity();
// When a query tile's dot products for the whole training set fit in this many bytes (N <=
// 32768 for float32), handlers that ask for it (kLookahead) get every tile's logits first, so
// each query's minimum is bounded before any weight is formed: a spread-out posterior then
// skips the tiles that only looked relevant against an early, poor running minimum. Below
// kLookaheadMinD the stored dot products cost more memory traffic than the GEMM (measured at
// D = 64: 0.235 s without, 0.27-0.30 s with, one thread, t = 0.5).
constexpr int64_t kLookaheadBytes = int64_t(16) << 20;
constexpr int64_t kLookaheadMinD = 128;

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

// Calls f(std::integral_constant<int, DC>) with DC = D for D <= 3 and 0 otherwise (the fused
// small-D kernels).
template <typename F>
inline auto with_fixed_d(int64_t D, F f) {
  switch (D) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}

// The query side of the current tile, filled by the driver and read by the handler.
template <typename T>
struct QueryTile {
  const TrainSet<T>& tr;
  const Queries<T>& q;
  const int64_t D;
  int64_t i0 = 0, mt = 0;
  std::vector<double> xd;      // the queries in double (QT x D)
  std::vector<double> xnorm2;  // |x - alpha mu|^2
  std::vector<ExpansionBound> bnd;  // each query's bound of the GEMM expansion
  const T* Gcur = nullptr;  // the current training tile's dot products, row stride kTrainTile
  double tile_ncmax = 0;    // largest |Xc_n| in the current training tile
  std::vector<double> lam;  // one query's lam over the current tile (handler scratch)
  std::vector<double> zeros;

  QueryTile(const TrainSet<T>& tr_, const Queries<T>& q_, int64_t QT)
      : tr(tr_), q(q_), D(tr_.D), xd(QT * tr_.D), xnorm2(QT), bnd(QT), lam(kTrainTile),
        zeros(kTrainTile, 0.0) {}

  // Exact lam of query i and training point n (exact.hpp's row routine).
  double exact(int64_t i, int64_t n) const {
    return exact_lam(q.x + i * D, tr.X + n * D, q.alpha[i], D,
                     tr.logw ? 2.0 * q.sigma2[i] * tr.logw[n] : 0.0);
  }
  // The error bound of every approximate lam of query il in the current training tile.
  double tile_bound(int64_t il) const {
    return bnd[il](std::abs(q.alpha[i0 + il]) * tile_ncmax);
  }
};

template <typename T, typename H>
class Driver {
 public:
  static constexpr int64_t QT = H::kQueryTile;
  static constexpr int MR = Blocking<T>::MR, NR = Blocking<T>::NR;

  Driver(const TrainSet<T>& tr_, const Queries<T>& q_, typename H::Shared& shared)
      : tr(tr_), q(q_), D(tr_.D), direct(tr_.D < kDirectMaxD), qt(tr_, q_, QT),
        h(qt, shared) {
    for (int64_t d = 0; d < D; ++d) mu_norm += tr.mu[d] * tr.mu[d];
    mu_norm = std::sqrt(mu_norm);
    ncmax_all = *std::max_element(tr.normc, tr.normc + tr.N);
    if (direct) {
      const int64_t ntiles = (tr.N + kDirectTile - 1) / kDirectTile;
      box_lb.resize(ntiles);
      lanes.resize(8 * kDirectTile);
      words = (ntiles + 63) / 64;
      keep_tile.resize(QT * words);
    } else {
      xq.resize(QT * D);
      Ap.resize(QT * D);
      G.resize(QT * kTrainTile);
      blocks.resize(QT / MR);
      // (a second sweep reuses them: worth it at any D)
      if (H::kLookahead && (D >= kLookaheadMinD || H::kSweeps > 1) &&
          tr.N * QT * int64_t(sizeof(T)) <= kLookaheadBytes)
        Gall.resize(((tr.N + kTrainTile - 1) / kTrainTile) * QT * kTrainTile);
    }
  }

  // Queries [i0, i0 + mt) against training tiles [t0, t1); part s of a split. False if stopped.
  bool run_tile(int64_t i0, int64_t mt, int64_t t0, int64_t t1, int64_t s,
                const std::atomic<bool>& stop, const StopFn* poll) {
    load(i0, mt);
    h.begin(i0, mt);
    for (int sweep = 0; sweep < H::kSweeps; ++sweep) {  // two: the draws' exact maximum first
      if constexpr (H::kSweeps > 1)
        if (sweep > 0) h.next_sweep();
      const bool done = direct ? direct_tiles(t0, t1, stop, poll)
                               : gemm_tiles(t0, t1, stop, poll, sweep > 0);
      if (!done) return false;
    }
    for (int64_t il = 0; il < mt; ++il) h.finish(il, i0 + il, s);
    return true;
  }

  void done() { h.done(); }

 private:
  static bool stopped(const std::atomic<bool>& stop, const StopFn* poll) {
    if (poll && *poll && (*poll)()) return true;
    return stop.load(std::memory_order_relaxed);
  }

  void load(int64_t i0, int64_t mt) {
    qt.i0 = i0;
    qt.mt = mt;
    const T eps = std::numeric_limits<T>::epsilon();
    for (int64_t il = 0; il < QT; ++il) {
      if (il >= mt) {
        if (!direct) std::fill(&xq[il * D], &xq[il * D] + D, T(0));
        continue;
      }
      const int64_t i = i0 + il;
      const double alpha = q.alpha[i];
      double n2 = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        const double xv = double(q.x[i * D + d]);
        qt.xd[il * D + d] = xv;
        const double xc = xv - alpha * tr.mu[d];
        n2 += xc * xc;
        if (!direct) xq[il * D + d] = T(xc);
      }
      qt.xnorm2[il] = n2;
      if (!direct)
        qt.bnd[il] = ExpansionBound::make(std::sqrt(n2), std::abs(alpha) * mu_norm, D, eps / 2);
    }
    // The precise product (float32 only) when the handler finds the plain product's bound too
    // loose for some query of the tile: at intermediate noise the bound otherwise sends every
    // entry to exact float64 refinement, several times the cost of the product.
    // (Only for D > KC: shorter chains gain nothing.)
    precise = false;
    if constexpr (sizeof(T) == 4) {
      if (direct || D <= Blocking<T>::KC) return;
      for (int64_t il = 0; il < mt; ++il) {
        const int64_t i = i0 + il;
        const double b = std::abs(q.alpha[i]) * ncmax_all;
        bnd_precise[il] = ExpansionBound::make(std::sqrt(qt.xnorm2[il]),
                                               std::abs(q.alpha[i]) * mu_norm, D, eps / 2,
                                               Blocking<T>::KC);
        precise = precise || h.precise_pays(il, i, qt.bnd[il](b), bnd_precise[il](b));
      }
      if (!precise) return;
      std::copy(bnd_precise.begin(), bnd_precise.begin() + mt, qt.bnd.begin());
      if (G64.empty()) G64.resize(QT * kTrainTile);
    }
  }

  // --- GEMM tile source -------------------------------------------------------------------
  // The logit GEMM for one training tile: Gout = xq . Xc_tile^T (the tile packed once, in
  // the prepared training set).
  void logits(int64_t n0, int64_t nt, T* Gout) {
    qt.tile_ncmax = *std::max_element(tr.normc + n0, tr.normc + n0 + nt);
    const T* ApD = Ap.data();
    const int64_t D_ = D;
    gemm_packed<T>(blocks.data(), nblk, (nt + NR - 1) / NR, D,
                   [ApD, D_](int32_t b) { return APacked<T>{ApD + int64_t(b) * D_ * MR}; },
                   tr.packed + n0 * D, Gout, kTrainTile, precise ? G64.data() : nullptr);
    qt.Gcur = Gout;
  }

  // again: a second sweep over the same queries (the lookahead's logits are kept)
  bool gemm_tiles(int64_t t0, int64_t t1, const std::atomic<bool>& stop, const StopFn* poll,
                  bool again) {
    const int64_t mt = qt.mt, i0 = qt.i0;
    nblk = int((mt + MR - 1) / MR);  // only blocks holding queries are computed
    for (int b = 0; b < nblk; ++b) blocks[b] = b;
    const bool lookahead = !Gall.empty();
    if (!(again && lookahead)) pack_a<T>(nblk, D, xq.data(), D, Ap.data());
    auto tile_G = [this](int64_t t) { return Gall.data() + t * QT * kTrainTile; };
    if (lookahead && !again)  // all logit GEMMs first: each query's minimum is bounded first
      for (int64_t t = t0; t < t1; ++t) {
        if (stopped(stop, poll)) return false;
        const int64_t n0 = t * kTrainTile, nt = std::min(kTrainTile, tr.N - n0);
        logits(n0, nt, tile_G(t));
        for (int64_t il = 0; il < mt; ++il) h.gemm_hint(il, i0 + il, n0, nt);
      }
    for (int64_t t = t0; t < t1; ++t) {
      if (stopped(stop, poll)) return false;
      const int64_t n0 = t * kTrainTile, nt = std::min(kTrainTile, tr.N - n0);
      if (lookahead) {
        qt.tile_ncmax = *std::max_element(tr.normc + n0, tr.normc + n0 + nt);
        qt.Gcur = tile_G(t);
      } else {
        logits(n0, nt, G.data());
      }
      h.gemm_tile_begin(nt);
      for (int64_t il = 0; il < mt; ++il) h.gemm_row(il, i0 + il, n0, nt);
      h.gemm_tile_end(n0, nt);
    }
    return true;
  }

  // --- direct tile source (D < kDirectMaxD) -----------------------------------------------
  // lam of query il over the direct tile at positions [p0, p0 + nt) into qt.lam; its minimum.
  template <int DC>
  double direct_lam(int64_t il, int64_t i, int64_t p0, int64_t nt) {
    // without weights no log-weight term (2 sigma^2 may overflow: never inf * 0)
    const double* xi = &qt.xd[il * D];
    if (tr.logw_tiled)
      return exact_lam_columns<DC, true>(xi, q.alpha[i], tr.XT + p0, tr.N, nt, D,
                                         2.0 * q.sigma2[i], tr.logw_tiled + p0, lanes.data(),
                                         qt.zeros.data(), qt.lam.data());
    return exact_lam_columns<DC, false>(xi, q.alpha[i], tr.XT + p0, tr.N, nt, D, 0.0, nullptr,
                                        lanes.data(), qt.zeros.data(), qt.lam.data());
  }

  // A lower bound on lam over direct tile t: the squared distance from x to the tile's scaled
  // bounding box, less the largest log-weight term. Rounding is monotone, so fl(alpha X) stays
  // in the rounded box; as a margin each distance still gives up 2^-52 of the box's scale and
  // the sum a relative 1e-12.
  double box_lower_bound(int64_t il, int64_t i, int64_t t) const {
    const double alpha = q.alpha[i];
    const double* b = tr.box + t * (2 * D + 1);
    const double* xi = &qt.xd[il * D];
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

  // Before the tile loop, which direct tiles query il visits: the handler may take a hint from
  // the tile whose box is nearest (its exact lam), when the boxes are spread enough for tiles
  // to be left out at all; then the tiles whose box lies beyond the handler's cut are left out
  // (kept as bits: 8x less memory than the bounds). The nearest tile is always visited.
  template <int DC>
  void direct_keep(int64_t il, int64_t i, int64_t t0, int64_t t1) {
    uint64_t* keep = &keep_tile[il * words];
    std::fill(keep, keep + words, ~uint64_t(0));
    int64_t best = t0;
    double lb_far = -kInf;
    for (int64_t t = t0; t < t1; ++t) {
      box_lb[t] = box_lower_bound(il, i, t);
      if (box_lb[t] < box_lb[best]) best = t;
      lb_far = std::max(lb_far, box_lb[t]);
    }
    if (!h.wants_hint(il, i, box_lb[best], lb_far)) return;
    const int64_t p0 = best * kDirectTile, nt = std::min(kDirectTile, tr.N - p0);
    h.direct_hint(il, i, nt, direct_lam<DC>(il, i, p0, nt));
    const double cut = h.cut(il, i);
    for (int64_t t = t0; t < t1; ++t)
      if (t != best && box_lb[t] > cut) keep[t / 64] &= ~(uint64_t(1) << (t % 64));
  }

  bool direct_tiles(int64_t t0, int64_t t1, const std::atomic<bool>& stop, const StopFn* poll) {
    return with_fixed_d(D, [&](auto dc) {
      constexpr int DC = decltype(dc)::value;
      const int64_t mt = qt.mt, i0 = qt.i0;
      for (int64_t il = 0; il < mt; ++il) direct_keep<DC>(il, i0 + il, t0, t1);
      for (int64_t t = t0; t < t1; ++t) {
        if (stopped(stop, poll)) return false;
        const int64_t p0 = t * kDirectTile, nt = std::min(kDirectTile, tr.N - p0);
        for (int64_t il = 0; il < mt; ++il) {
          const int64_t i = i0 + il;
          if (!(keep_tile[il * words + t / 64] >> (t % 64) & 1)) continue;
          // handlers whose cut tightens as they go (the top-k) test the box again
          if (H::kDynamicCut && box_lower_bound(il, i, t) > h.cut(il, i)) continue;
          const double lmin = direct_lam<DC>(il, i, p0, nt);
          h.template direct_tile<DC>(il, i, p0, nt, lmin);
        }
      }
      return true;
    });
  }

  const TrainSet<T>& tr;
  const Queries<T>& q;
  const int64_t D;
  const bool direct;
  QueryTile<T> qt;
  H h;
  double mu_norm = 0;  // |mu|
  double ncmax_all = 0;  // the largest |Xc_n|
  bool precise = false;  // this query tile's logits from the precise product
  std::vector<double> G64;  // its float64 slice sums
  std::vector<ExpansionBound> bnd_precise = std::vector<ExpansionBound>(QT);
  std::vector<T> xq;   // centred queries rounded to T (GEMM path)
  AlignedVector<T> Ap, G, Gall;  // packed queries; this tile's / all tiles' dot products
  std::vector<int32_t> blocks;
  int nblk = 0;
  std::vector<double> box_lb, lanes;
  int64_t words = 0;                // 64-bit words per query of keep_tile
  std::vector<uint64_t> keep_tile;  // direct path: [query][tile] bits, the tiles visited
};

// Runs handler H over all queries. Returns false if should_stop() asked to stop.
template <typename H, typename T>
bool drive(const TrainSet<T>& tr, const Queries<T>& q, typename H::Shared& shared,
           int num_threads, const StopFn& should_stop) {
  const int nthreads = thread_count(num_threads);
  const int64_t qtiles = (q.M + H::kQueryTile - 1) / H::kQueryTile;
  const int64_t ttiles = (tr.N + kTrainTile - 1) / kTrainTile;
  static_assert(kTrainTile == kDirectTile, "one tile size for both tile sources");
  // Few query tiles: split the training set too, for handlers whose partial states merge.
  int64_t nsplit = 1;
  if (H::kSplit && qtiles < nthreads)
    nsplit = std::min(ttiles, (2 * int64_t(nthreads) + qtiles - 1) / qtiles);
  H::prepare(shared, nsplit);
  const int64_t items = qtiles * nsplit;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> finished{0};
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel num_threads(nthreads)
  {
    // Only the calling (Python main) thread can see Ctrl-C: it polls between its own training
    // tiles and, once out of work, keeps polling until the other threads are done.
    const bool first = omp_get_thread_num() == 0;
    try {
      Driver<T, H> driver(tr, q, shared);
#pragma omp for schedule(dynamic, 1) nowait
      for (int64_t item = 0; item < items; ++item) {
        if (!stop.load(std::memory_order_relaxed)) {
          const int64_t qi = item / nsplit, s = item % nsplit;
          const int64_t i0 = qi * H::kQueryTile, mt = std::min(H::kQueryTile, q.M - i0);
          const int64_t t0 = s * ttiles / nsplit, t1 = (s + 1) * ttiles / nsplit;
          if (!driver.run_tile(i0, mt, t0, t1, s, stop, first ? &should_stop : nullptr))
            stop.store(true);
        }
        finished.fetch_add(1);
      }
      driver.done();
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      stop.store(true);
    }
    if (first && should_stop) {
      // spin briefly (the others usually finish within microseconds), then sleep in short
      // steps: a sleep per call would add its length to every short call (sampler steps)
      const auto since = std::chrono::steady_clock::now();
      while (finished.load() < items && !stop.load(std::memory_order_relaxed)) {
        if (should_stop()) stop.store(true);
        if (std::chrono::steady_clock::now() - since < std::chrono::microseconds(200))
          std::this_thread::yield();
        else
          std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    }
  }
  if (error) std::rethrow_exception(error);
  if (stop.load()) return false;
  H::merge(shared, nsplit, q.M);
  return true;
}

}  // namespace MIXSCORE_ISA
}  // namespace mixscore
