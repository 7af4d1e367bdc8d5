// Exact k-nearest-neighbour search, compiled once per instruction set (nearest_variant.cpp).
// See cpp/include/mixscore/nearest.hpp for the contract. The GEMM expansion A of each squared
// distance and its error bound E are those of bound.hpp (alpha = 1); entries with A - E above
// the current k-th best exact squared distance cannot enter the top-k.
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <mutex>
#include <vector>

#include <omp.h>

#include "mixscore/bound.hpp"
#include "mixscore/exact.hpp"
#include "mixscore/nearest.hpp"
#include "mixscore/packgemm.hpp"

namespace mixscore {
namespace MIXSCORE_ISA {

namespace nn {

constexpr int64_t kQT = 256;  // queries per tile (any value gives the same results)
constexpr int64_t kNT = kTrainTile;
constexpr int64_t kLd = kTrainTile + 16;  // row stride of G (padded against L1 set aliasing)

// Row stride of the query tile: an odd number of 64-byte lines (no L1 set aliasing at D = 2^k).
template <typename T>
int64_t query_ld(int64_t D) {
  const int64_t per_line = 64 / int64_t(sizeof(T));
  int64_t lines = (D + per_line - 1) / per_line;
  if (lines % 2 == 0) ++lines;
  return lines * per_line;
}
constexpr int64_t kChunk = 64;  // entries per vectorized "any candidate?" test
constexpr double kInf = std::numeric_limits<double>::infinity();

inline bool before(double d2a, int64_t na, double d2b, int64_t nb) {
  return d2a < d2b || (d2a == d2b && na < nb);
}

template <typename T>
struct Worker {
  const TrainSet<T>& tr;
  const T* x;
  const int64_t k, D, ldq;
  double mu_norm = 0;  // |mu|
  static constexpr int MR = Blocking<T>::MR, NR = Blocking<T>::NR;
  std::vector<T> xq;
  AlignedVector<T> Ap, G;
  std::vector<int32_t> blocks;
  std::vector<double> qn2, v, hi, bd;
  std::vector<ExpansionBound> bnd;
  std::vector<int32_t> cand;
  std::vector<int64_t> bi, cnt;
  int64_t refined = 0;

  Worker(const TrainSet<T>& tr_, const T* x_, int64_t k_)
      : tr(tr_), x(x_), k(k_), D(tr_.D), ldq(query_ld<T>(tr_.D)) {
    for (int64_t d = 0; d < D; ++d) mu_norm += tr.mu[d] * tr.mu[d];
    mu_norm = std::sqrt(mu_norm);
    bnd.resize(kQT);
    xq.resize(kQT * ldq);
    Ap.resize(kQT * D);
    G.resize(kQT * kLd);
    blocks.resize(kQT / MR);
    for (int b = 0; b < int(kQT / MR); ++b) blocks[b] = b;
    qn2.resize(kQT);
    v.resize(kNT);
    hi.resize(kNT);
    cand.resize(kNT);
    bd.resize(kQT * k);
    bi.resize(kQT * k);
    cnt.resize(kQT);
  }

  void load(int64_t i0, int64_t mt) {
    for (int64_t il = 0; il < kQT; ++il) {
      T* row = &xq[il * ldq];
      cnt[il] = 0;
      if (il >= mt) {
        std::fill(row, row + D, T(0));
        continue;
      }
      const T* xi = x + (i0 + il) * D;
      double n2 = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        const double xc = double(xi[d]) - tr.mu[d];
        row[d] = T(xc);
        n2 += xc * xc;
      }
      qn2[il] = n2;
      bnd[il] = ExpansionBound::make(std::sqrt(n2), mu_norm, D,
                                     std::numeric_limits<T>::epsilon() / 2);
    }
  }

  double threshold(int64_t il) const { return cnt[il] == k ? bd[il * k + k - 1] : kInf; }

  void insert(int64_t il, double d2, int64_t n) {
    double* d = &bd[il * k];
    int64_t* id = &bi[il * k];
    const int64_t c = cnt[il];
    if (c == k && !before(d2, n, d[k - 1], id[k - 1])) return;
    int64_t p = c < k ? c : k - 1;
    while (p > 0 && before(d2, n, d[p - 1], id[p - 1])) {
      d[p] = d[p - 1];
      id[p] = id[p - 1];
      --p;
    }
    d[p] = d2;
    id[p] = n;
    if (c < k) cnt[il] = c + 1;
  }

  // One query against one training tile whose dot products are in G.
  void row(int64_t il, int64_t i, int64_t n0, int64_t nt) {
    // A - E = (a^2 - k0) + (1 - k2) |p|^2 - k1 |p| - 2 G,  A + E = (A - E) + 2 E(|p|)
    const ExpansionBound& E = bnd[il];
    const double A0 = qn2[il] - E.k0, one_m = 1.0 - E.k2, beta = E.k1;
    const T* Grow = &G[il * kLd];
    const double* nb2 = tr.norm2c + n0;
    const double* nb = tr.normc + n0;
    double* V = v.data();
    double thr = threshold(il);
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
    const T* xi = x + i * D;
    for (int64_t c = 0; c < nc; ++c) {
      const int64_t j = cand[c];
      if (V[j] > std::min(bound, threshold(il))) continue;
      const int64_t n = n0 + j;
      insert(il, exact_lam(xi, tr.X + n * D, 1.0, D, 0.0), n);
      ++refined;
    }
  }

  // Queries [i0, i0 + mt) against training tiles [t0, t1). Returns false if stopped.
  bool process(int64_t i0, int64_t mt, int64_t t0, int64_t t1, const std::atomic<bool>& stop,
               const StopFn* poll) {
    load(i0, mt);
    const int nblk = int((mt + MR - 1) / MR);
    pack_a<T>(nblk, D, xq.data(), ldq, Ap.data());
    const T* ApD = Ap.data();
    const int64_t D_ = D;
    for (int64_t t = t0; t < t1; ++t) {
      if (poll && *poll && (*poll)()) return false;
      if (stop.load(std::memory_order_relaxed)) return false;
      const int64_t n0 = t * kNT, nt = std::min(kNT, tr.N - n0);
      gemm_packed<T>(blocks.data(), nblk, (nt + NR - 1) / NR, D,
                     [ApD, D_](int32_t b) { return APacked<T>{ApD + int64_t(b) * D_ * MR}; },
                     tr.packed + n0 * D, G.data(), kLd);
      for (int64_t il = 0; il < mt; ++il) row(il, i0 + il, n0, nt);
    }
    return true;
  }
};

}  // namespace nn

template <typename T>
bool nearest_search(const TrainSet<T>& tr, const T* x, int64_t M, int64_t k, double* dist,
                    int64_t* idx, const NearestOptions& opt, const StopFn& should_stop,
                    NearestCounters* counters) {
  using nn::kQT;
  using nn::kNT;
  const int nthreads = opt.num_threads > 0 ? opt.num_threads : omp_get_max_threads();
  const int64_t qtiles = (M + kQT - 1) / kQT, ttiles = (tr.N + kNT - 1) / kNT;
  // Few query tiles: split the training set too (the top-k under the total order
  // (distance, index) of a union is the top-k of the parts' top-k, so results are the same).
  int64_t nsplit = 1;
  if (qtiles < nthreads) nsplit = std::min(ttiles, (2 * int64_t(nthreads) + qtiles - 1) / qtiles);
  std::vector<double> pd;
  std::vector<int64_t> pi, pc;
  if (nsplit > 1) {
    pd.resize(nsplit * M * k);
    pi.resize(nsplit * M * k);
    pc.resize(nsplit * M);
  }
  const int64_t items = qtiles * nsplit;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> refined{0};
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel num_threads(nthreads)
  {
    const bool first = omp_get_thread_num() == 0;
    try {
      nn::Worker<T> w(tr, x, k);
#pragma omp for schedule(dynamic, 1)
      for (int64_t item = 0; item < items; ++item) {
        if (stop.load(std::memory_order_relaxed)) continue;
        const int64_t qt = item / nsplit, s = item % nsplit;
        const int64_t i0 = qt * kQT, mt = std::min(kQT, M - i0);
        const int64_t t0 = s * ttiles / nsplit, t1 = (s + 1) * ttiles / nsplit;
        if (!w.process(i0, mt, t0, t1, stop, first ? &should_stop : nullptr)) {
          stop.store(true);
          continue;
        }
        for (int64_t il = 0; il < mt; ++il) {
          const int64_t i = i0 + il;
          if (nsplit == 1) {
            for (int64_t r = 0; r < k; ++r) {
              dist[i * k + r] = std::sqrt(w.bd[il * k + r]);
              idx[i * k + r] = tr.row_offset + w.bi[il * k + r];
            }
          } else {
            const int64_t base = (s * M + i) * k;
            for (int64_t r = 0; r < w.cnt[il]; ++r) {
              pd[base + r] = w.bd[il * k + r];
              pi[base + r] = w.bi[il * k + r];
            }
            pc[s * M + i] = w.cnt[il];
          }
        }
      }
      refined.fetch_add(w.refined);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      stop.store(true);
    }
  }
  if (error) std::rethrow_exception(error);
  if (stop.load()) return false;
  if (nsplit > 1) {
    std::vector<std::pair<double, int64_t>> all;
    for (int64_t i = 0; i < M; ++i) {
      all.clear();
      for (int64_t s = 0; s < nsplit; ++s) {
        const int64_t base = (s * M + i) * k;
        for (int64_t r = 0; r < pc[s * M + i]; ++r) all.emplace_back(pd[base + r], pi[base + r]);
      }
      std::partial_sort(all.begin(), all.begin() + k, all.end());  // (d2, index) lexicographic
      for (int64_t r = 0; r < k; ++r) {
        dist[i * k + r] = std::sqrt(all[r].first);
        idx[i * k + r] = tr.row_offset + all[r].second;
      }
    }
  }
  if (counters) counters->refined = refined.load();
  return true;
}

}  // namespace MIXSCORE_ISA
}  // namespace mixscore
