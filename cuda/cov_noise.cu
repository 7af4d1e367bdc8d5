// Gaussian noise with covariance Cov_w(X_0) on the GPU (the effective sampler of the
// generalization-through-variance paper, Prop. 3.1; SCIENCE.md section 4): per query
//     xi = sum_n sqrt(w_n / S0) zeta_n (X_n - m),   zeta_n ~ N(0, 1),
// m the posterior mean (given), zeta_n the first normal of the Philox stream (key seed ^
// NOISE_KEY, sample row * N + n, step): the streams of mixscore.covariance.cov_noise (the
// reference), without a D x D matrix. One block per query: the exact minimum and the refined
// weights of the posterior pass (row.cuh), entries more than `cut` nats below the maximum left
// out (their terms are below e^(-cut / 2) of the largest); the kept entries' terms summed in
// index order, thread t owning dimensions t, t + nt, ... No product: the work is D per kept
// entry (every entry where the posterior is spread).
#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

#include "kernels.cuh"
#include "launch.hpp"
#include "mixscore/philox.hpp"
#include "row.cuh"

namespace mixscore {
namespace cuda {

namespace {

template <typename T, typename Row>
__device__ inline void noise_row(const CovNoiseArgs<T>& d, const Row& row, int64_t i) {
  __shared__ double shc[kThreads], shv[kThreads];
  __shared__ int64_t shn[kThreads];
  const PosteriorArgs<T>& a = d.pass;
  const int tid = threadIdx.x, nt = blockDim.x;
  const int64_t D = a.D;
  double lam_min;
  int64_t best;
  row_minimum(row, a.N, &lam_min, &best);
  const double* m = d.mean + i * D;
  double* out = d.out + i * D;
  for (int64_t k = tid; k < D; k += nt) out[k] = 0.0;
  const uint64_t stream0 = uint64_t(d.rows[i]) * uint64_t(a.N);
  double s0 = 0.0;
  for (int64_t c0 = 0; c0 < a.N; c0 += nt) {
    const int64_t n = c0 + tid;
    const Entry en = refine_entry(a, row, n, lam_min);
    double c = 0.0;
    if (en.keep) {
      const double g = fmax((en.lam - lam_min) * row.inv, 0.0);
      double z0, z1;
      philox_normal_pair(d.key, stream0 + uint64_t(n), d.step, 0, &z0, &z1);
      s0 += exp(-g);
      c = exp(-0.5 * g) * z0;
    }
    shc[tid] = c;
    shn[tid] = n;
    if (__syncthreads_or(c != 0.0)) {  // the chunk's terms, in index order
      for (int j = 0; j < nt; ++j) {
        if (shc[j] == 0.0) continue;
        const T* Xn = a.train + shn[j] * D;
        for (int64_t k = tid; k < D; k += nt) out[k] += shc[j] * (double(Xn[k]) - m[k]);
      }
    }
    __syncthreads();  // shc, shn are rewritten next chunk
  }
  const double scale = 1.0 / sqrt(block_sum(s0, shv));
  for (int64_t k = tid; k < D; k += nt) out[k] *= scale;
}

template <typename T, typename Acc>
__global__ void __launch_bounds__(kThreads)
    cov_noise_gemm_kernel(CovNoiseArgs<T> d, int64_t i0, const Acc* G) {
  const int64_t i = i0 + blockIdx.x;
  noise_row(d, GemmRow<T, Acc>(d.pass, i, G + int64_t(blockIdx.x) * d.pass.N), i);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) cov_noise_exact_kernel(CovNoiseArgs<T> d) {
  noise_row(d, ExactRow<T>(d.pass, blockIdx.x), blockIdx.x);
}

}  // namespace

template <typename T>
void cov_noise(const CovNoiseArgs<T>& d, uintptr_t stream) {
  const cudaStream_t st = cudaStream_t(stream);
  drive_rows(
      d.pass, st,
      [&](auto* G, int64_t i0, int64_t m) {
        using Acc = std::remove_pointer_t<decltype(G)>;
        MIXSCORE_LAUNCH((cov_noise_gemm_kernel<T, Acc>), unsigned(m), kThreads, 0, st, d, i0,
                        G);
        check(cudaGetLastError(), "covariance noise kernel launch");
      },
      [&] {
        MIXSCORE_LAUNCH(cov_noise_exact_kernel<T>, unsigned(d.pass.M), kThreads, 0, st, d);
        check(cudaGetLastError(), "covariance noise kernel launch");
      });
}

template void cov_noise<float>(const CovNoiseArgs<float>&, uintptr_t);
template void cov_noise<double>(const CovNoiseArgs<double>&, uintptr_t);

}  // namespace cuda
}  // namespace mixscore
