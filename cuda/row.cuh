// One query's row of a pass over the training set, one block per query (posterior.cu's row
// kernel, draws.cu): the entries' lam_n = |x - alpha X_n|^2 - 2 sigma^2 log pi_n, estimated
// from a chunk's logits with the rigorous bound (GemmRow) or exact (ExactRow: small D), the
// exact minimum over the row, and the CPU engine's refinement rule entry by entry
// (cpp/src/lam_row.hpp), written once for every kernel that reads a row.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels.cuh"
#include "launch.hpp"
#include "logits.cuh"
#include "tensor_logits.cuh"

namespace mixscore {
namespace cuda {

// The rigorous bound of the chunk's logits product (bound.hpp) for a query with |x'| = xa.
template <typename T>
__device__ inline ExpansionBound logits_bound(const PosteriorArgs<T>& a, double xa, double amu) {
  if (sizeof(T) == 8) return ExpansionBound::make(xa, amu, a.D, 0x1p-53);
  if (a.products == int(Products::kTf32x3))  // 3 D tensor-core accumulations
    return ExpansionBound::make(xa, amu, 3 * a.D, kTf32x3Unit);
  if (a.products == int(Products::kFloat64Tensor))  // exact products, float64 sums: chunk 1
    return ExpansionBound::make(xa, amu, a.D, 0x1p-24, 1);  // over-covers them
  return ExpansionBound::make(xa, amu, a.D, 0x1p-24);
}

// Query i's entries with the exact rule (exact_rule.hpp) and its noise level.
template <typename T>
struct ExactRow {
  const T* x;
  const T* train;
  const double* logw;
  int64_t D;
  double alpha, s2, inv, tws;

  __device__ ExactRow(const PosteriorArgs<T>& a, int64_t i)
      : x(a.x + i * a.D), train(a.train), logw(a.logw), D(a.D), alpha(a.alpha[i]),
        s2(a.sigma2[i]), inv(fmin(0.5 / s2, 1e300)), tws(2.0 * s2) {}

  __device__ double exact(int64_t n) const {
    const double l = exact_sq<T>(x, train + n * D, D, alpha);
    return logw ? l - tws * logw[n] : l;
  }
  // no estimate: every entry is exact, its bound 0
  __device__ double approx(int64_t n, double* err) const {
    *err = 0.0;
    return exact(n);
  }
};

// The same row estimated from its logits g (the chunk's product q . p_n) with the bound.
template <typename T, typename Acc>
struct GemmRow : ExactRow<T> {
  const Acc* g;
  const double *pnorm, *p2;
  double xs2, a2;
  ExpansionBound bound;

  __device__ GemmRow(const PosteriorArgs<T>& a, int64_t i, const Acc* g_)
      : ExactRow<T>(a, i), g(g_), pnorm(a.pnorm), p2(a.p2), xs2(a.xs2[i]),
        a2(this->alpha * this->alpha),
        bound(logits_bound<T>(a, sqrt(xs2), fabs(this->alpha) * a.mu_norm)) {}

  __device__ double approx(int64_t n, double* err) const {
    *err = bound(fabs(this->alpha) * pnorm[n]);
    const double A = xs2 - 2.0 * this->alpha * double(g[n]) + a2 * p2[n];
    return this->logw ? A - this->tws * this->logw[n] : A;
  }
};

// The exact minimum of the row and its lowest index (every thread gets both): an upper bound
// from the estimates, then every entry the bound cannot exclude recomputed exactly.
template <typename Row>
__device__ inline void row_minimum(const Row& row, int64_t N, double* lam_min, int64_t* best) {
  __shared__ double shv[kThreads];
  __shared__ int64_t shi[kThreads];
  __shared__ int sho[kThreads];
  const int tid = threadIdx.x, nt = blockDim.x;
  double upper = INFINITY, err;
  for (int64_t n = tid; n < N; n += nt) upper = fmin(upper, row.approx(n, &err) + err);
  upper = block_min(upper, shv);
  double lmin = INFINITY;
  int64_t at = N;
  for (int64_t n = tid; n < N; n += nt) {
    const double A = row.approx(n, &err);
    if (A - err <= upper) {
      const double l = row.exact(n);
      if (l < lmin) lmin = l, at = n;  // n increases: the first of ties is kept
    }
  }
  int owner;
  block_argmin(&lmin, &at, &owner, shv, shi, sho);
  *lam_min = lmin;
  *best = at < N ? at : 0;  // none: a NaN query (NaN outputs), no read past the training set
}

// One entry of a chunk of blockDim entries under the refinement rule (every thread of the
// block calls it, n >= N for none: the budget counts the chunk's dominant entries). keep: within
// `cut` nats of the maximum; heavy: lam recomputed exactly (bound above `cap` nats, or a
// dominant entry, within `dom` nats, with bound above `tol`, while the chunk has at most
// `budget` of them).
struct Entry {
  double lam;
  bool keep, heavy;
};

template <typename T, typename Row>
__device__ inline Entry refine_entry(const PosteriorArgs<T>& a, const Row& row, int64_t n,
                                     double lam_min) {
  double A = INFINITY, e = 0, gap = INFINITY, err;
  if (n < a.N) {
    A = row.approx(n, &err);
    e = err * row.inv;                      // the entry's error bound, nats
    gap = (A - err - lam_min) * row.inv;    // a lower bound of its true gap below the maximum
  }
  const bool keep = gap < a.cut;
  const bool dominant = keep && gap <= a.dom && e > a.tol && e <= a.cap;
  const bool refine_dominant = __syncthreads_count(dominant) <= a.budget;
  const bool heavy = keep && (e > a.cap || (dominant && refine_dominant));
  return {heavy ? row.exact(n) : A, keep, heavy};
}

// The chunk's logits product by the requested kernel (tensor cores where the device has them).
template <typename T, typename Acc>
void logits(const PosteriorArgs<T>& a, const T* q, int64_t m, Acc* G, bool tensor,
            cudaStream_t st) {
  const dim3 grid = logits_grid(m, a.N);
  if (std::is_same<Acc, double>::value && tensor) {
    MIXSCORE_LAUNCH(logits_f64_tensor_kernel<T>, grid, S::kThreads, 0, st, q, a.packed, m, a.N,
                    a.D, reinterpret_cast<double*>(G));
    check(cudaGetLastError(), "float64 tensor-core logits kernel launch");
  } else if (a.products == int(Products::kTf32x3)) {
    MIXSCORE_LAUNCH(logits_tf32x3_kernel, grid, S::kThreads, 0, st,
                    reinterpret_cast<const float*>(q), reinterpret_cast<const float*>(a.packed),
                    m, a.N, a.D, reinterpret_cast<float*>(G));
    check(cudaGetLastError(), "3xTF32 logits kernel launch");
  } else {
    launch_logits<T, Acc>(q, a.packed, m, a.N, a.D, G, st);
  }
}

// float64 logits for float64 data or float64 products, else float32.
template <typename T>
bool wide_logits(int products) {
  return sizeof(T) == 8 || products == int(Products::kFloat64Tensor);
}

// The driver of a pass over rows (posterior.cu, draws.cu): for D > kDirectMaxD the queries
// in chunks of ws_rows, each chunk's logits product G (float64 for float64 data or products,
// else float32) in the workspace, then rows(G, i0, m) queues the chunk's kernels; for small D
// exact() queues the pass without logits.
template <typename T, typename Rows, typename Exact>
void drive_rows(const PosteriorArgs<T>& a, cudaStream_t st, Rows rows, Exact exact) {
  if (a.M == 0) return;
  if (a.D <= kDirectMaxD) return exact();
  if (a.ws_rows < S::BM || a.ws_rows % S::BM != 0)
    throw std::invalid_argument("ws_rows must be a positive multiple of 128");
  const bool tensor = tensor_logits_available();
  if (a.products == int(Products::kTf32x3) && (sizeof(T) != 4 || !tensor))
    throw std::invalid_argument(
        "3xTF32 products need float32 data and a GPU of compute capability >= 8.0");
  auto chunks = [&](auto* G) {
    for (int64_t i0 = 0; i0 < a.M; i0 += a.ws_rows) {
      const int64_t m = a.M - i0 < a.ws_rows ? a.M - i0 : a.ws_rows;
      logits(a, a.q + i0 * a.D, m, G, tensor, st);
      rows(G, i0, m);
    }
  };
  if (wide_logits<T>(a.products))
    chunks(reinterpret_cast<double*>(a.workspace));
  else
    chunks(reinterpret_cast<float*>(a.workspace));
}

}  // namespace cuda
}  // namespace mixscore
