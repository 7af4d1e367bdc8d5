// The posterior pass on the GPU: one block per query streams the whole training set in a fixed
// order (SCIENCE.md sections 1 and 6), so results do not depend on the launch shape:
//   1. upper = min_n (A_n + E_n), A the GEMM-expansion estimate, E its rigorous bound
//      (mixscore/bound.hpp, shared with the CPU engine);
//   2. every n with A_n - E_n <= upper is recomputed exactly (float64 direct differences): the
//      exact lam_min and its lowest index;
//   3. weights w_n = exp(-(lam_n - lam_min) / (2 sigma^2)) of the entries within `cut` nats,
//      exact where the bound exceeds tol e^max(0, gap - log N) nats, summed in float64 in a
//      fixed order (blockDim entries at a time), chunks without weight skipped.
// Sums are about the mean mu; the caller moves them to the centre X_best and finalizes
// (python/mixscore/backends/cuda.py). A simple, correct design (a matrix-vector pass per
// query, not a tiled GEMM): compile-checked, run only where a GPU is (tests/test_gpu.py).
#include <cuda_runtime.h>

#include <cmath>

#include "kernels.cuh"
#include "launch.hpp"

namespace mixscore {
namespace cuda {

template <typename T>
__global__ void __launch_bounds__(kThreads) posterior_kernel(PosteriorArgs<T> a) {
  __shared__ double shv[kThreads];
  __shared__ int64_t shi[kThreads];
  __shared__ int sho[kThreads];
  __shared__ double shw[kThreads], shn2[kThreads];
  const int64_t i = blockIdx.x, D = a.D, N = a.N;
  const int tid = threadIdx.x, nt = blockDim.x;
  const T* q = a.q + i * D;
  const T* x = a.x + i * D;
  const double alpha = a.alpha[i], s2 = a.sigma2[i], xs2 = a.xs2[i];
  const double inv = fmin(0.5 / s2, 1e300), tws = 2.0 * s2;
  const double u = sizeof(T) == 4 ? 0x1p-24 : 0x1p-53;
  const ExpansionBound bound = ExpansionBound::make(sqrt(xs2), fabs(alpha) * a.mu_norm, D, u);
  const double log_n = log(double(N));

  auto estimate = [&](int64_t n, double* err) {
    const double p2 = a.p2[n];
    *err = bound(fabs(alpha) * sqrt(p2));
    double A = approx_sq(q, a.packed + n * D, D, xs2, alpha, p2);
    if (a.logw) A -= tws * a.logw[n];
    return A;
  };
  auto exact = [&](int64_t n) {
    const double l = exact_sq(x, a.train + n * D, D, alpha);
    return a.logw ? l - tws * a.logw[n] : l;
  };

  // 1. an upper bound of the minimum
  double upper = INFINITY, err;
  for (int64_t n = tid; n < N; n += nt) upper = fmin(upper, estimate(n, &err) + err);
  upper = block_min(upper, shv);
  // 2. the exact minimum among the entries the bound cannot exclude
  double lam_min = INFINITY;
  int64_t best = N;
  for (int64_t n = tid; n < N; n += nt) {
    const double A = estimate(n, &err);
    if (A - err <= upper) {
      const double l = exact(n);
      if (l < lam_min) lam_min = l, best = n;  // n increases: the first of ties is kept
    }
  }
  int owner;
  block_argmin(&lam_min, &best, &owner, shv, shi, sho);
  // 3. the weighted sums, blockDim entries at a time in index order
  double s0 = 0, sw2 = 0, sx2 = 0;
  double* s1 = a.s1 + i * D;
  for (int64_t d = tid; d < D; d += nt) s1[d] = 0;
  for (int64_t c0 = 0; c0 < N; c0 += nt) {
    const int64_t n = c0 + tid;
    double w = 0, n2 = 0;
    if (n < N) {
      const double A = estimate(n, &err);
      const double gap = (A - err - lam_min) * inv;
      if (gap < a.cut) {
        const double slack = exp(fmin(fmax(gap - log_n, 0.0), 80.0));
        const double l = err * inv > a.tol * slack ? exact(n) : A;
        w = exp(-(l - lam_min) * inv);
        for (int64_t d = 0; d < D; ++d) {
          const double t = double(a.train[n * D + d]) - a.mu[d];
          n2 += t * t;
        }
      }
    }
    shw[tid] = w;
    shn2[tid] = n2;
    if (!__syncthreads_or(w != 0.0)) continue;  // no weight in this chunk
    const int cnt = int(N - c0 < nt ? N - c0 : nt);
    if (tid == 0)
      for (int j = 0; j < cnt; ++j) s0 += shw[j], sw2 += shw[j] * shw[j], sx2 += shw[j] * shn2[j];
    for (int64_t d = tid; d < D; d += nt) {
      double acc = s1[d];
      for (int j = 0; j < cnt; ++j)
        if (shw[j] != 0.0) acc += shw[j] * (double(a.train[(c0 + j) * D + d]) - a.mu[d]);
      s1[d] = acc;
    }
    __syncthreads();
  }
  if (tid == 0) {
    a.lam_min[i] = lam_min;
    a.best[i] = best;
    a.s0[i] = s0;
    a.sum_w2[i] = sw2;
    a.s2[i] = sx2;
  }
}

template <typename T>
void posterior(const PosteriorArgs<T>& a, uintptr_t stream) {
  if (a.M == 0) return;
  MIXSCORE_LAUNCH(posterior_kernel<T>, unsigned(a.M), kThreads, 0, cudaStream_t(stream), a);
  check(cudaGetLastError(), "posterior kernel launch");
}

template void posterior<float>(const PosteriorArgs<float>&, uintptr_t);
template void posterior<double>(const PosteriorArgs<double>&, uintptr_t);

int device_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

}  // namespace cuda
}  // namespace mixscore
