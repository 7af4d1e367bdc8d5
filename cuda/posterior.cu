// The posterior pass on the GPU (SCIENCE.md sections 1, 6, 8): per query x at (alpha, sigma^2)
//     lam_n = |x - alpha X_n|^2 - 2 sigma^2 log pi_n,   w_n = e^{-(lam_n - lam_min)/(2 sigma^2)},
// the exact lam_min and its lowest index, and float64 sums of w and w^2, and of w (X_n - c),
// w |X_n - c|^2 about the centre c = X_best for the entries whose lam is recomputed exactly;
// the other entries' sums are about the mean mu (the caller moves them to c and finalizes:
// python/mixscore/backends/cuda.py). Two drivers, both with a fixed order of every sum, so
// results do not depend on the launch shape or on how queries are split:
//
// D > kDirectMaxD, queries in chunks of `ws_rows` (the workspace holds one chunk's logits):
//   1. logits product  G = q . p_n (logits.cuh, tensor_logits.cuh; `products`: float32
//      SIMT FMAs; float64 (tensor cores on sm_80+), which the caller picks where the float32
//      bound would send every entry to exact refinement; or the opt-in 3xTF32);
//   2. one block per query (row_kernel): the rigorous bound of mixscore/bound.hpp per entry,
//      the exact minimum among the entries it cannot exclude, then the refinement rule of the
//      CPU engine (cpp/src/lam_row.hpp): exact float64 lam where the bound exceeds `cap`
//      nats, and for the dominant entries (within `dom` nats of the maximum, at most
//      `budget` per 256 entries) where it exceeds `tol`; entries more than `cut` nats below
//      the maximum are dropped. The exactly recomputed entries are summed in float64 about the
//      centre X_best; the others' weights overwrite G and a flag marks each 128 x 128 block of
//      (queries, points) that carries such weight;
//   3. weighted sums  S1 = W (X - mu) (tile_gemm.cuh), blocks without weight skipped, float32
//      products summed in float64 per 128 points.
// D <= kDirectMaxD (posterior_direct.cuh): every lam exact from direct float64 differences,
// the training set streamed through shared memory, no M x N array anywhere.
#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

#include "kernels.cuh"
#include "launch.hpp"
#include "posterior_direct.cuh"
#include "row.cuh"

namespace mixscore {
namespace cuda {

// --- 2. one query's row: bound, exact minimum, refinement rule, weights ----------------------
template <typename T, typename Acc>
__global__ void __launch_bounds__(kThreads)
    row_kernel(PosteriorArgs<T> a, int64_t i0, Acc* G, uint8_t* live) {
  const int64_t r = blockIdx.x, i = i0 + r, N = a.N, D = a.D;
  const int tid = threadIdx.x, nt = blockDim.x;
  Acc* g = G + r * N;
  const GemmRow<T, Acc> row(a, i, g);
  const double inv = row.inv;
  double lam_min;
  int64_t best;
  row_minimum(row, N, &lam_min, &best);

  // the weights, nt entries at a time; each thread sums its own entries in index order. The
  // exactly recomputed ("heavy") entries are summed here in float64 about the centre
  // c = X_best, thread t owning dimensions t, t + nt, ... (no cancellation in tau2); the
  // others go through the weighted-sums product (their weights in G, zero for the heavy).
  __shared__ double shw[kThreads], shv[kThreads];
  __shared__ int64_t shn[kThreads];
  const T* c = a.train + best * D;
  double* s1h = a.s1 + i * D;
  for (int64_t d = tid; d < D; d += nt) s1h[d] = 0.0;
  const int64_t nchunks = (N + S::BN - 1) / S::BN;
  uint8_t* live_row = live + (r / S::BM) * nchunks;
  double s0 = 0, sw2 = 0, s2h = 0, s0l = 0, s2l = 0;
  for (int64_t c0 = 0; c0 < N; c0 += nt) {
    const int64_t n = c0 + tid;
    const Entry en = refine_entry(a, row, n, lam_min);
    const bool heavy = en.heavy;
    double w = 0;
    if (en.keep) {
      w = exp(-(en.lam - lam_min) * inv);
      s0 += w;
      sw2 += w * w;
      if (!heavy) {
        s0l += w;
        s2l += w * a.xc2[n];
        live_row[n / S::BN] = 1;  // every writer writes 1
      }
    }
    if (n < N) g[n] = Acc(heavy ? 0.0 : w);
    shw[tid] = heavy ? w : 0.0;
    shn[tid] = n;
    if (__syncthreads_or(heavy)) {  // the heavy entries of this chunk, in index order
      for (int j = 0; j < nt; ++j) {
        if (shw[j] == 0.0) continue;
        const T* Xn = a.train + shn[j] * D;
        for (int64_t d = tid; d < D; d += nt) {
          const double t = double(Xn[d]) - double(c[d]);
          s1h[d] += shw[j] * t;
          s2h += shw[j] * (t * t);
        }
      }
      __syncthreads();  // shw, shn are rewritten next chunk
    }
  }
  s0 = block_sum(s0, shv);
  sw2 = block_sum(sw2, shv);
  s2h = block_sum(s2h, shv);
  s0l = block_sum(s0l, shv);
  s2l = block_sum(s2l, shv);
  if (tid == 0) {
    a.lam_min[i] = lam_min;
    a.best[i] = best;
    a.s0[i] = s0;
    a.sum_w2[i] = sw2;
    a.s2[i] = s2h;
    a.s0_light[i] = s0l;
    a.s2_light[i] = s2l;
  }
}

// --- 3. the weighted sums --------------------------------------------------------------------
template <typename T, typename Acc>
__global__ void __launch_bounds__(S::kThreads)
    sums_kernel(PosteriorArgs<T> a, int64_t i0, int64_t m, const Acc* W, const uint8_t* live) {
  const int64_t N = a.N, D = a.D, nchunks = (N + S::BN - 1) / S::BN;
  const int64_t row0 = int64_t(blockIdx.y) * S::BM, col0 = int64_t(blockIdx.x) * S::BN;
  const uint8_t* live_row = live + blockIdx.y * nchunks;
  const RowsLoad<Acc, Acc> weights{W, m, N};
  const CentredColumnsLoad<T, Acc> centred{a.train, a.mu, N, D};
  double out[S::TM][S::TN];
  zero_tile(out);
  for (int64_t c = 0; c < nchunks; ++c) {
    if (!live_row[c]) continue;  // the same for the whole block: no divergent barrier
    const int64_t k0 = c * S::BN, k1 = k0 + S::BN;
    if constexpr (std::is_same<Acc, double>::value) {
      tile_product<Acc>(weights, centred, row0, col0, k0, k1, out);
    } else {  // float32 products over 128 points, then summed in float64
      Acc acc[S::TM][S::TN];
      zero_tile(acc);
      tile_product<Acc>(weights, centred, row0, col0, k0, k1, acc);
      for (int ii = 0; ii < S::TM; ++ii)
        for (int j = 0; j < S::TN; ++j) out[ii][j] += double(acc[ii][j]);
    }
  }
  store_tile(out, row0, col0, m, D, D, a.s1_light + i0 * D);
}

// --- the host driver -------------------------------------------------------------------------
// One chunk of m queries from i0 after its logits G: the rows, then the weighted sums.
template <typename T, typename Acc>
void chunk_rows_and_sums(const PosteriorArgs<T>& a, Acc* G, int64_t i0, int64_t m,
                         cudaStream_t st) {
  const int64_t nchunks = (a.N + S::BN - 1) / S::BN, qtiles = (m + S::BM - 1) / S::BM;
  uint8_t* live = reinterpret_cast<uint8_t*>(G + a.ws_rows * a.N);
  check(cudaMemsetAsync(live, 0, size_t(qtiles * nchunks), st), "clearing the block flags");
  MIXSCORE_LAUNCH((row_kernel<T, Acc>), unsigned(m), kThreads, 0, st, a, i0, G, live);
  check(cudaGetLastError(), "row kernel launch");
  const unsigned dtiles = unsigned((a.D + S::BN - 1) / S::BN);
  MIXSCORE_LAUNCH((sums_kernel<T, Acc>), dim3(dtiles, unsigned(qtiles)), S::kThreads, 0, st, a,
                  i0, m, G, live);
  check(cudaGetLastError(), "sums kernel launch");
}

template <typename T>
int64_t posterior_workspace(int64_t N, int64_t D, int64_t rows, int products) {
  if (rows <= 0) return 0;
  if (D <= kDirectMaxD) return DirectPartials::bytes(rows, N, D);
  const int64_t acc = wide_logits<T>(products) ? 8 : 4;
  const int64_t chunks = (N + S::BN - 1) / S::BN, qtiles = (rows + S::BM - 1) / S::BM;
  return rows * N * acc + qtiles * chunks;
}

template <typename T>
void posterior(const PosteriorArgs<T>& a, uintptr_t stream) {
  if (a.M == 0) return;
  const cudaStream_t st = cudaStream_t(stream);
  if (a.ws_rows < S::BM || a.ws_rows % S::BM != 0)  // the direct pass chunks queries too
    throw std::invalid_argument("posterior: ws_rows must be a positive multiple of 128");
  drive_rows(
      a, st, [&](auto* G, int64_t i0, int64_t m) { chunk_rows_and_sums(a, G, i0, m, st); },
      [&] { direct_pass<T>(a, st); });
}

template void posterior<float>(const PosteriorArgs<float>&, uintptr_t);
template void posterior<double>(const PosteriorArgs<double>&, uintptr_t);
template int64_t posterior_workspace<float>(int64_t, int64_t, int64_t, int);
template int64_t posterior_workspace<double>(int64_t, int64_t, int64_t, int);

int device_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

}  // namespace cuda
}  // namespace mixscore
