// Posterior draws on the GPU (the naive estimator of the generalization-through-variance
// paper, Prop. 4.1; SCIENCE.md section 4): per query R training indices n_r ~ w_n(x, t) by
// exponential jumps over the weights in index order, the algorithm and Philox streams of the
// NumPy reference (python/mixscore/covariance.py, posterior_draws) and of cpp/src/draws.hpp:
// draw r keeps its key K and a target on the cumulative weight; the first entry whose
// cumulative weight passes the target replaces it, with key E / w (E ~ Exp(1) below K w) and
// the next target that entry's cumulative weight + J / K (J ~ Exp(1)); replacement j takes
// the Philox block of counter (j, first_step + r, row) and key seed ^ DRAWS_KEY.
//
// One block per query. The exact minimum of lam first (row.cuh), so every weight is relative
// to the final maximum and the truncation is the reference's (entries more than `cut` nats
// below it left out); then the entries in chunks of blockDim: each thread one entry's weight
// under the posterior pass's refinement rule, and thread r advances draw r through the chunk,
// summing the weights one by one in index order like the reference's cumulative sum. So given
// the same weights the indices are the reference's; they differ only where the weights'
// rounding decides.
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

// Draws r0 .. r0 + min(R - r0, blockDim) - 1 of query i over its row.
template <typename T, typename Row>
__device__ inline void draw_row(const DrawsArgs<T>& d, const Row& row, int64_t i, int64_t r0) {
  __shared__ double wsh[kThreads];
  const PosteriorArgs<T>& a = d.pass;
  const int tid = threadIdx.x, nt = blockDim.x;
  double lam_min;
  int64_t best;
  row_minimum(row, a.N, &lam_min, &best);
  const int64_t r = r0 + tid;
  const bool mine = r < d.R;
  const uint64_t stream = uint64_t(d.rows[i]);
  const uint32_t step = d.first_step + uint32_t(r);
  double K = INFINITY, target = 0.0, cum = 0.0;  // the first entry with weight replaces
  uint32_t jump = 0;
  int64_t pos = -1;
  for (int64_t c0 = 0; c0 < a.N; c0 += nt) {
    const int64_t n = c0 + tid;
    const Entry en = refine_entry(a, row, n, lam_min);
    const double g = fmax((en.lam - lam_min) * row.inv, 0.0);
    wsh[tid] = en.keep && g <= a.cut ? exp(-g) : 0.0;
    __syncthreads();
    const int64_t len = a.N - c0 < nt ? a.N - c0 : nt;
    for (int64_t k = 0; mine && k < len; ++k) {
      const double wk = wsh[k];
      cum += wk;
      if (!(cum > target)) continue;
      const Philox4x32 b = philox4x32_10(jump++, step, uint32_t(stream), uint32_t(stream >> 32),
                                         uint32_t(d.key), uint32_t(d.key >> 32));
      const double u1 = unit_double(b.v[0], b.v[1]), u2 = unit_double(b.v[2], b.v[3]);
      const double p = K < INFINITY ? -expm1(-K * wk) : 1.0;
      K = -log1p(-u1 * p) / wk;
      target = cum + (K > 0.0 ? -log1p(-u2) / K : INFINITY);
      pos = c0 + k;
    }
    __syncthreads();  // wsh is rewritten by the next chunk
  }
  if (mine) d.out[i * d.R + r] = pos;
}

template <typename T, typename Acc>
__global__ void __launch_bounds__(kThreads)
    draws_gemm_kernel(DrawsArgs<T> d, int64_t i0, int64_t r0, const Acc* G) {
  const int64_t i = i0 + blockIdx.x;
  draw_row(d, GemmRow<T, Acc>(d.pass, i, G + int64_t(blockIdx.x) * d.pass.N), i, r0);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) draws_exact_kernel(DrawsArgs<T> d, int64_t r0) {
  const int64_t i = blockIdx.x;
  draw_row(d, ExactRow<T>(d.pass, i), i, r0);
}

}  // namespace

template <typename T>
void draws(const DrawsArgs<T>& d, uintptr_t stream) {
  if (d.R < 1) throw std::invalid_argument("draws: R must be >= 1");
  const cudaStream_t st = cudaStream_t(stream);
  // draws r0 .. r0 + 255 per launch: a thread per draw
  drive_rows(
      d.pass, st,
      [&](auto* G, int64_t i0, int64_t m) {
        using Acc = std::remove_pointer_t<decltype(G)>;
        for (int64_t r0 = 0; r0 < d.R; r0 += kThreads) {
          MIXSCORE_LAUNCH((draws_gemm_kernel<T, Acc>), unsigned(m), kThreads, 0, st, d, i0, r0,
                          G);
          check(cudaGetLastError(), "draws kernel launch");
        }
      },
      [&] {
        for (int64_t r0 = 0; r0 < d.R; r0 += kThreads) {
          MIXSCORE_LAUNCH(draws_exact_kernel<T>, unsigned(d.pass.M), kThreads, 0, st, d, r0);
          check(cudaGetLastError(), "draws kernel launch");
        }
      });
}

template void draws<float>(const DrawsArgs<float>&, uintptr_t);
template void draws<double>(const DrawsArgs<double>&, uintptr_t);

}  // namespace cuda
}  // namespace mixscore
