// The top-k handler of the driver (driver.hpp): the exact k nearest training points
// (Euclidean), SCIENCE.md section 5. Per query a running top-k of exact squared distances
// under the total order (distance, index); the cut is the k-th distance (or a hint below it).
// GEMM path: entries whose lower bound A - E (bound.hpp) exceeds the cut cannot enter, the
// others are refined exactly (exact.hpp). Direct path (D < 16): every entry of a visited tile is
// exact, and tiles whose box is beyond the cut are left out. Because the result is the top-k
// of the exact distances under a total order, it does not depend on the tiling, the number of
// threads, the batch split or the query order, and the NumPy reference (same rounding rule)
// gives the same bits. Partial states (a split of the training set) merge exactly.
#pragma once
#include <algorithm>
#include <utility>

#include "driver.hpp"
#include "mixscore/nearest.hpp"

namespace mixscore {
namespace MIXSCORE_ISA {

inline bool before(double d2a, int64_t na, double d2b, int64_t nb) {
  return d2a < d2b || (d2a == d2b && na < nb);
}

// One candidate of a running top-k, ordered by (squared distance, index): a total order.
struct Neighbor {
  double d2;
  int64_t n;
  bool operator<(const Neighbor& o) const { return before(d2, n, o.d2, o.n); }
};

template <typename T>
struct TopKHandler {
  static constexpr int64_t kQueryTile = 256;  // any value gives the same results
  static constexpr bool kDynamicCut = true;  // the k-th distance tightens: boxes tested again
  static constexpr bool kLookahead = false, kSplit = true;
  static constexpr int kSweeps = 1;  // one pass over the training set
  static constexpr int64_t kChunk = 64;  // entries per vectorized "any candidate?" test

  struct Shared {
    int64_t k;
    double* dist;
    int64_t* idx;
    int64_t M;
    int64_t row_offset;
    std::vector<double> pd;  // split: each part's top-k (squared distances, local indices)
    std::vector<int64_t> pi, pc;
    std::atomic<int64_t> refined{0};
  };
  static void prepare(Shared& sh, int64_t nsplit) {
    if (nsplit == 1) return;
    sh.pd.resize(nsplit * sh.M * sh.k);
    sh.pi.resize(nsplit * sh.M * sh.k);
    sh.pc.resize(nsplit * sh.M);
  }

  QueryTile<T>& qt;
  const TrainSet<T>& tr;
  Shared& sh;
  const int64_t k;
  std::vector<double> v, hi, hint;
  std::vector<int32_t> cand;
  // Per query of the tile a max-heap of its best k (the worst in front): O(log k) per insert
  // and, with only min(M, kQueryTile) rows, O(M k) memory even for k = N.
  std::vector<Neighbor> heap;
  std::vector<int64_t> cnt;
  int64_t refined = 0;

  TopKHandler(QueryTile<T>& qt_, Shared& sh_)
      : qt(qt_), tr(qt_.tr), sh(sh_), k(sh_.k), v(kTrainTile), hi(kTrainTile),
        hint(kQueryTile), cand(kTrainTile),
        heap(std::min(kQueryTile, std::max<int64_t>(sh_.M, 1)) * sh_.k), cnt(kQueryTile) {}

  void begin(int64_t, int64_t) {
    std::fill(cnt.begin(), cnt.end(), 0);
    std::fill(hint.begin(), hint.end(), kInf);
  }
  void done() { sh.refined.fetch_add(refined); }

  double threshold(int64_t il) const { return cnt[il] == k ? heap[il * k].d2 : kInf; }

  void insert(int64_t il, double d2, int64_t n) {
    Neighbor* h = &heap[il * k];
    const int64_t c = cnt[il];
    const Neighbor e{d2, n};
    if (c < k) {
      h[c] = e;
      std::push_heap(h, h + c + 1);
      cnt[il] = c + 1;
    } else if (e < h[0]) {
      std::pop_heap(h, h + k);
      h[k - 1] = e;
      std::push_heap(h, h + k);
    }
  }

  // The query's top-k in ascending order (distance, index), in place.
  const Neighbor* sorted(int64_t il) {
    Neighbor* h = &heap[il * k];
    std::sort_heap(h, h + cnt[il]);
    return h;
  }

  // Entries above this cannot enter the final top-k (the hint is an upper bound on the final
  // k-th distance; equal entries may, by index).
  double cut(int64_t il, int64_t) const { return std::min(threshold(il), hint[il]); }

  // Direct path: the k-th smallest lam of the nearest box's tile bounds the final k-th distance.
  bool wants_hint(int64_t, int64_t, double, double) const { return true; }
  // Only the few candidates are refined: the plain product always pays.
  bool precise_pays(int64_t, int64_t, double, double) const { return false; }
  void direct_hint(int64_t il, int64_t, int64_t nt, double) {
    if (nt < k) return;
    std::copy(qt.lam.begin(), qt.lam.begin() + nt, hi.begin());
    std::nth_element(hi.begin(), hi.begin() + (k - 1), hi.begin() + nt);
    hint[il] = std::min(hint[il], hi[k - 1]);
  }
  template <int DC>
  void direct_tile(int64_t il, int64_t i, int64_t p0, int64_t nt, double lmin) {
    if (lmin > cut(il, i)) return;
    const double* L = qt.lam.data();
    const double thr = cut(il, i);
    for_flagged(nt, [L, thr](int64_t j) { return L[j] <= thr; }, [&](int64_t j) {
      if (L[j] <= cut(il, i)) insert(il, L[j], tr.order[p0 + j]);
    });
  }

  void gemm_hint(int64_t, int64_t, int64_t, int64_t) {}
  void gemm_tile_begin(int64_t) {}
  void gemm_tile_end(int64_t, int64_t) {}

  // GEMM path: one query against one training tile (dot products in qt.Gcur): lower bounds
  // A - E (bound.hpp), candidates not above the cut refined exactly in increasing index order.
  void gemm_row(int64_t il, int64_t i, int64_t n0, int64_t nt) {
    // A - E = (a^2 - k0) + (1 - k2) |p|^2 - k1 |p| - 2 G,  A + E = (A - E) + 2 E(|p|)
    const ExpansionBound& E = qt.bnd[il];
    const double A0 = qt.xnorm2[il] - E.k0, one_m = 1.0 - E.k2, beta = E.k1;
    const T* Grow = qt.Gcur + il * kTrainTile;
    const double* nb2 = tr.norm2c + n0;
    const double* nb = tr.normc + n0;
    double* V = v.data();
    double thr = cut(il, i);
    // (1) lower bounds A - E; collect the entries not above the threshold (NaN included).
    int64_t nc = 0;
    for (int64_t c0 = 0; c0 < nt; c0 += kChunk) {
      const int64_t c1 = std::min(nt, c0 + kChunk);
      int hits = 0;
#pragma omp simd reduction(+ : hits)
      for (int64_t j = c0; j < c1; ++j) {
        double lo = A0 + one_m * nb2[j] - beta * nb[j] - 2.0 * double(Grow[j]);
        V[j] = lo;
        hits += !(lo > thr);
      }
      if (hits)
        for (int64_t j = c0; j < c1; ++j) {
          cand[nc] = int32_t(j);
          nc += !(V[j] > thr);
        }
    }
    if (nc == 0) return;
    // (2) many candidates (top-k not yet full, or a crowded tile): the k-th smallest upper
    // bound A + E among them is an upper bound on the final k-th distance.
    if (nc >= k && nc > k + 32) {
      for (int64_t c = 0; c < nc; ++c) {
        const int64_t j = cand[c];
        hi[c] = V[j] + 2.0 * E(nb[j]);
      }
      std::nth_element(hi.begin(), hi.begin() + (k - 1), hi.begin() + nc);
      const double t = hi[k - 1];
      if (t < thr) {
        thr = t;
        int64_t m = 0;
        for (int64_t c = 0; c < nc; ++c) {
          cand[m] = cand[c];
          m += !(V[cand[c]] > thr);
        }
        nc = m;
      }
    }
    // (3) exact refinement in increasing index order, tightening the threshold as we go.
    const double bound = thr;
    for (int64_t c = 0; c < nc; ++c) {
      const int64_t j = cand[c];
      if (V[j] > std::min(bound, cut(il, i))) continue;
      const int64_t n = n0 + j;
      insert(il, qt.exact(i, n), n);
      ++refined;
    }
  }

  void finish(int64_t il, int64_t i, int64_t s) {
    const int64_t M = sh.M;
    const Neighbor* best = sorted(il);
    if (sh.pc.empty()) {
      for (int64_t r = 0; r < k; ++r) {
        sh.dist[i * k + r] = std::sqrt(best[r].d2);
        sh.idx[i * k + r] = tr.row_offset + best[r].n;
      }
      return;
    }
    const int64_t base = (s * M + i) * k;
    for (int64_t r = 0; r < cnt[il]; ++r) {
      sh.pd[base + r] = best[r].d2;
      sh.pi[base + r] = best[r].n;
    }
    sh.pc[s * M + i] = cnt[il];
  }

  // The parts' top-k merged: the top-k under (distance, index) of a union is the top-k of the
  // parts' top-k, so the result is that of one part.
  static void merge(Shared& sh, int64_t nsplit, int64_t M) {
    if (nsplit == 1) return;
    const int64_t k = sh.k;
    std::vector<std::pair<double, int64_t>> all;
    for (int64_t i = 0; i < M; ++i) {
      all.clear();
      for (int64_t s = 0; s < nsplit; ++s) {
        const int64_t base = (s * M + i) * k;
        for (int64_t r = 0; r < sh.pc[s * M + i]; ++r)
          all.emplace_back(sh.pd[base + r], sh.pi[base + r]);
      }
      std::partial_sort(all.begin(), all.begin() + k, all.end());  // (d2, index) lexicographic
      for (int64_t r = 0; r < k; ++r) {
        sh.dist[i * k + r] = std::sqrt(all[r].first);
        sh.idx[i * k + r] = sh.row_offset + all[r].second;
      }
    }
  }
};

// The k nearest training points of M queries (mixscore/nearest.hpp).
template <typename T>
bool nearest_search(const TrainSet<T>& train, const T* x, int64_t M, int64_t k, double* dist,
                    int64_t* idx, const NearestOptions& opt, const StopFn& should_stop,
                    NearestCounters* counters) {
  TrainSet<T> tr = train;  // distances only: no log-weights
  tr.logw = nullptr;
  tr.logw_tiled = nullptr;
  const std::vector<double> ones(M, 1.0);
  Queries<T> q;
  q.x = x;
  q.alpha = ones.data();
  q.sigma2 = ones.data();
  q.M = M;
  typename TopKHandler<T>::Shared shared{k, dist, idx, M, tr.row_offset, {}, {}, {}};
  if (!drive<TopKHandler<T>>(tr, q, shared, opt.num_threads, should_stop)) return false;
  if (counters) counters->refined = shared.refined.load();
  return true;
}

}  // namespace MIXSCORE_ISA
}  // namespace mixscore
