// The posterior pass for small D (D <= kDirectMaxD) without any M x N array: every lam is
// exact (float64 direct differences, the rule of exact_rule.hpp), the training set streams
// through shared memory, and the work is split over queries (kDirectQueries per block) and
// over training points (splits of kDirectSplit, fixed by N alone, so the rounding never
// depends on M or on how queries are split into calls):
//   1. per (query, split) the smallest lam and its first index; per query the minimum over
//      the splits in order (an earlier split keeps exact ties: the lowest index);
//   2. per (query, split) the float64 sums of w, w^2, w |X_n - c|^2, w (X_n - c) about the
//      centre c = X_best in index order, entries more than `cut` nats below the maximum
//      dropped; per query the splits summed in order (the "light" sums of launch.hpp are 0).
// Partial results live in the workspace (rows x splits x (5 + D) float64).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels.cuh"
#include "launch.hpp"

namespace mixscore {
namespace cuda {

constexpr int kDirectQueries = 64, kDirectStage = 256;  // queries per block, points per stage
constexpr int64_t kDirectSplit = 2048;                   // training points per split

inline int64_t direct_splits(int64_t N) { return (N + kDirectSplit - 1) / kDirectSplit; }

// Per (query, split) partial results of a chunk of `rows` queries.
struct DirectPartials {
  double* lam;   // rows x splits
  int64_t* idx;  // rows x splits
  double* sums;  // rows x splits x (3 + D): s0, sum w^2, sum w |X - c|^2, then w (X - c)

  static int64_t bytes(int64_t rows, int64_t N, int64_t D) {
    return rows * direct_splits(N) * (2 + 3 + D) * 8;
  }
  static DirectPartials at(void* w, int64_t rows, int64_t N) {
    const int64_t cells = rows * direct_splits(N);
    double* base = reinterpret_cast<double*>(w);
    return {base, reinterpret_cast<int64_t*>(base + cells), base + 2 * cells};
  }
};

// The dimension: a compile-time constant for D <= 4; for DC = 16 the data's D <= 16, the
// per-dimension loops unrolled to DC with a guard (constant indices: the query, centre and
// sums stay in registers).
template <int DC>
__device__ inline int64_t dims(int64_t D) {
  return DC <= 4 ? DC : D;
}

// The exact rule of exact_rule.hpp (exact_sq_rule: lane d % 8 gets t_d^2 for d = 0 .. D - 1
// in that order, then the same tree) with the loop unrolled to DC >= D: the same bits, the
// query x a register array.
template <int DC, typename T>
__device__ inline double exact_sq_small(const T (&x)[DC], const T* Xn, int64_t D,
                                        double alpha) {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
  for (int d = 0; d < DC; ++d)
    if (d < D) {
      const double t = double(x[d]) - alpha * double(Xn[d]);
      s[d % 8] += t * t;
    }
  return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

// One block's queries against one split of the training set, streamed through shared memory:
// f(n, X_n, log pi_n, |X_n - mu|^2) for every point in index order (active threads only).
template <typename T, int DC, class F>
__device__ inline void stream_split(const PosteriorArgs<T>& a, bool active, F&& f) {
  __shared__ T shX[kDirectStage * DC];
  __shared__ double shL[kDirectStage], shC[kDirectStage];
  const int64_t D = dims<DC>(a.D), n_begin = int64_t(blockIdx.y) * kDirectSplit;
  const int64_t n_end = n_begin + kDirectSplit < a.N ? n_begin + kDirectSplit : a.N;
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kDirectStage) {
    const int cnt = int(n_end - n0 < kDirectStage ? n_end - n0 : kDirectStage);
    for (int e = threadIdx.x; e < cnt * D; e += blockDim.x) shX[e] = a.train[n0 * D + e];
    for (int e = threadIdx.x; e < cnt; e += blockDim.x) {
      shL[e] = a.logw ? a.logw[n0 + e] : 0.0;
      shC[e] = a.xc2[n0 + e];
    }
    __syncthreads();
    if (active)
      for (int k = 0; k < cnt; ++k) f(n0 + k, shX + k * D, shL[k], shC[k]);
    __syncthreads();
  }
}

// A query of the chunk (row r, global i0 + r) in registers.
template <typename T, int DC>
struct DirectQuery {
  bool active;
  int64_t r, i;
  T x[DC];
  double alpha = 0, inv = 0, tws = 0;

  __device__ DirectQuery(const PosteriorArgs<T>& a, int64_t i0, int64_t m)
      : r(int64_t(blockIdx.x) * blockDim.x + threadIdx.x), i(i0 + r) {
    active = r < m;
    const int64_t D = dims<DC>(a.D);
#pragma unroll
    for (int d = 0; d < DC; ++d) x[d] = active && d < D ? a.x[i * D + d] : T(0);
    if (!active) return;
    alpha = a.alpha[i];
    inv = fmin(0.5 / a.sigma2[i], 1e300);
    tws = 2.0 * a.sigma2[i];
  }
  __device__ double lam(const PosteriorArgs<T>& a, const T* Xn, double logw) const {
    return exact_sq_small<DC>(x, Xn, dims<DC>(a.D), alpha) - tws * logw;
  }
};

template <typename T, int DC>
__global__ void __launch_bounds__(kDirectQueries)
    direct_min_kernel(PosteriorArgs<T> a, int64_t i0, int64_t m, DirectPartials p) {
  const DirectQuery<T, DC> q(a, i0, m);
  double lam_min = INFINITY;
  int64_t best = a.N;
  stream_split<T, DC>(a, q.active, [&](int64_t n, const T* Xn, double lw, double) {
    const double l = q.lam(a, Xn, lw);
    if (l < lam_min) lam_min = l, best = n;  // strict: the first of exact ties is kept
  });
  if (!q.active) return;
  const int64_t cell = q.r * gridDim.y + blockIdx.y;
  p.lam[cell] = lam_min;
  p.idx[cell] = best;
}

template <typename T, int DC>
__global__ void __launch_bounds__(kDirectQueries)
    direct_sums_kernel(PosteriorArgs<T> a, int64_t i0, int64_t m, DirectPartials p) {
  const DirectQuery<T, DC> q(a, i0, m);
  const double lam_min = q.active ? a.lam_min[q.i] : 0.0;
  const int64_t D = dims<DC>(a.D);
  double c[DC], s1[DC];  // the centre X_best; sum w (X - c)
  const int64_t best = q.active ? a.best[q.i] : 0;
#pragma unroll
  for (int d = 0; d < DC; ++d) {
    c[d] = q.active && d < D ? double(a.train[best * D + d]) : 0.0;
    s1[d] = 0;
  }
  double s0 = 0, sw2 = 0, sx2 = 0;
  stream_split<T, DC>(a, q.active, [&](int64_t, const T* Xn, double lw, double) {
    const double gap = (q.lam(a, Xn, lw) - lam_min) * q.inv;
    if (!(gap < a.cut)) return;
    const double w = exp(-gap);
    s0 += w;
    sw2 += w * w;
    double n2 = 0;
#pragma unroll
    for (int d = 0; d < DC; ++d)
      if (d < D) {
        const double t = double(Xn[d]) - c[d];
        s1[d] += w * t;
        n2 += t * t;
      }
    sx2 += w * n2;
  });
  if (!q.active) return;
  double* out = p.sums + (q.r * gridDim.y + blockIdx.y) * (3 + D);
  out[0] = s0;
  out[1] = sw2;
  out[2] = sx2;
#pragma unroll
  for (int d = 0; d < DC; ++d)
    if (d < D) out[3 + d] = s1[d];
}

// Per query, the splits in order: the minimum (first == combine the minima) or the sums.
template <typename T>
__global__ void direct_combine_kernel(PosteriorArgs<T> a, int64_t i0, int64_t m,
                                      DirectPartials p, int64_t splits, bool sums) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, i = i0 + r, D = a.D;
  if (r >= m) return;
  if (!sums) {
    double lam = INFINITY;
    int64_t best = a.N;
    for (int64_t s = 0; s < splits; ++s)
      if (p.lam[r * splits + s] < lam) lam = p.lam[r * splits + s], best = p.idx[r * splits + s];
    a.lam_min[i] = lam;
    a.best[i] = best < a.N ? best : 0;  // none: a NaN query (NaN outputs), no read past X
    return;
  }
  double acc[3] = {0, 0, 0};
  for (int64_t d = 0; d < D; ++d) a.s1[i * D + d] = a.s1_light[i * D + d] = 0;
  a.s0_light[i] = a.s2_light[i] = 0;
  for (int64_t s = 0; s < splits; ++s) {
    const double* v = p.sums + (r * splits + s) * (3 + D);
    for (int j = 0; j < 3; ++j) acc[j] += v[j];
    for (int64_t d = 0; d < D; ++d) a.s1[i * D + d] += v[3 + d];
  }
  a.s0[i] = acc[0];
  a.sum_w2[i] = acc[1];
  a.s2[i] = acc[2];
}

template <typename T, int DC>
void direct_pass_dc(const PosteriorArgs<T>& a, cudaStream_t st) {
  const int64_t splits = direct_splits(a.N);
  const DirectPartials p = DirectPartials::at(a.workspace, a.ws_rows, a.N);
  for (int64_t i0 = 0; i0 < a.M; i0 += a.ws_rows) {
    const int64_t m = a.M - i0 < a.ws_rows ? a.M - i0 : a.ws_rows;
    const dim3 grid(unsigned((m + kDirectQueries - 1) / kDirectQueries), unsigned(splits));
    const unsigned cblocks = unsigned((m + 127) / 128);
    MIXSCORE_LAUNCH((direct_min_kernel<T, DC>), grid, kDirectQueries, 0, st, a, i0, m, p);
    MIXSCORE_LAUNCH(direct_combine_kernel<T>, cblocks, 128, 0, st, a, i0, m, p, splits, false);
    MIXSCORE_LAUNCH((direct_sums_kernel<T, DC>), grid, kDirectQueries, 0, st, a, i0, m, p);
    MIXSCORE_LAUNCH(direct_combine_kernel<T>, cblocks, 128, 0, st, a, i0, m, p, splits, true);
    check(cudaGetLastError(), "direct posterior kernel launch");
  }
}

template <typename T>
void direct_pass(const PosteriorArgs<T>& a, cudaStream_t st) {
  switch (a.D) {
    case 1: return direct_pass_dc<T, 1>(a, st);
    case 2: return direct_pass_dc<T, 2>(a, st);
    case 3: return direct_pass_dc<T, 3>(a, st);
    case 4: return direct_pass_dc<T, 4>(a, st);
    default: return direct_pass_dc<T, 16>(a, st);
  }
}

}  // namespace cuda
}  // namespace mixscore
