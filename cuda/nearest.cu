// Exact k nearest training points on the GPU: one block per query, the training set in a
// fixed order, so the result does not depend on the launch shape. For D > kDirectMaxD the
// dot products q . p_n come from the logits GEMM (logits.cuh) of a chunk of `ws_rows` queries
// in the workspace; for small D each block computes them itself. Then per query:
//   1. each thread keeps its k smallest upper bounds A_n + E_n (GEMM expansion plus the
//      rigorous bound of mixscore/bound.hpp); k rounds of a block minimum give U_k, the k-th
//      smallest upper bound, which is >= the true k-th smallest distance;
//   2. every n with A_n - E_n <= U_k is a candidate: its squared distance is recomputed
//      exactly (float64, the fixed order of exact.hpp, so copies get 0 and the bits equal the
//      CPU engine's); each thread keeps its k best (distance, index) and k rounds of a
//      lexicographic block minimum give the answer, ascending, lower index first on ties.
// Compile-checked; run only where a GPU is (tests/test_gpu.py).
#include <cmath>

#include "kernels.cuh"
#include "launch.hpp"
#include "logits.cuh"

namespace mixscore {
namespace cuda {

// Insert (v, n) into the ascending list (vals, idx) of length k (kept to the k smallest).
__device__ inline void insert(double* vals, int64_t* idx, int k, double v, int64_t n) {
  if (!(v < vals[k - 1] || (v == vals[k - 1] && n < idx[k - 1]))) return;
  int j = k - 1;
  while (j > 0 && (v < vals[j - 1] || (v == vals[j - 1] && n < idx[j - 1]))) {
    vals[j] = vals[j - 1];
    idx[j] = idx[j - 1];
    --j;
  }
  vals[j] = v;
  idx[j] = n;
}

// k rounds of a block minimum over the threads' list heads; round r's winner goes to
// out_v[r], out_i[r] (thread 0 writes) and its owner pops its head.
__device__ inline void block_merge(double* vals, int64_t* idx, int k, double* out_v,
                                   int64_t* out_i, double* shv, int64_t* shi, int* sho) {
  int head = 0;
  for (int r = 0; r < k; ++r) {
    double v = head < k ? vals[head] : INFINITY;
    int64_t n = head < k ? idx[head] : INT64_MAX;
    int owner;
    block_argmin(&v, &n, &owner, shv, shi, sho);
    if (threadIdx.x == 0) out_v[r] = v, out_i[r] = n;
    if (int(threadIdx.x) == owner) ++head;
  }
}

// G: the chunk's dot products (row blockIdx.x, N entries each), or null to compute them here.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    nearest_kernel(NearestArgs<T> a, int64_t i0, const T* G) {
  __shared__ double shv[kThreads];
  __shared__ int64_t shi[kThreads];
  __shared__ int sho[kThreads];
  __shared__ double kth[kMaxK];
  __shared__ int64_t kth_i[kMaxK];
  const int64_t i = i0 + blockIdx.x, D = a.D, N = a.N;
  const int k = int(a.k), tid = threadIdx.x, nt = blockDim.x;
  const T* q = a.q + i * D;
  const T* x = a.x + i * D;
  const double xs2 = a.xs2[i];
  const double u = sizeof(T) == 4 ? 0x1p-24 : 0x1p-53;
  const ExpansionBound bound = ExpansionBound::make(sqrt(xs2), a.mu_norm, D, u);
  const T* g = G ? G + int64_t(blockIdx.x) * N : nullptr;
  auto approx = [&](int64_t n, double p2) {
    return g ? xs2 - 2.0 * double(g[n]) + p2 : approx_sq(q, a.packed + n * D, D, xs2, 1.0, p2);
  };
  double vals[kMaxK];
  int64_t idx[kMaxK];

  // 1. the k-th smallest upper bound
  for (int j = 0; j < k; ++j) vals[j] = INFINITY, idx[j] = INT64_MAX;
  for (int64_t n = tid; n < N; n += nt) {
    const double p2 = a.p2[n];
    insert(vals, idx, k, approx(n, p2) + bound(sqrt(p2)), n);
  }
  block_merge(vals, idx, k, kth, kth_i, shv, shi, sho);
  __syncthreads();
  const double upper = kth[k - 1];
  // 2. exact distances of the candidates
  for (int j = 0; j < k; ++j) vals[j] = INFINITY, idx[j] = INT64_MAX;
  for (int64_t n = tid; n < N; n += nt) {
    const double p2 = a.p2[n];
    if (approx(n, p2) - bound(sqrt(p2)) <= upper)
      insert(vals, idx, k, exact_sq(x, a.train + n * D, D, 1.0), n);
  }
  block_merge(vals, idx, k, a.sq_dist + i * a.k, a.index + i * a.k, shv, shi, sho);
}

template <typename T>
void nearest(const NearestArgs<T>& a, uintptr_t stream) {
  if (a.k < 1 || a.k > kMaxK || a.k > a.N)
    throw std::invalid_argument("mixscore._cuda.nearest: k must be in [1, min(N, 32)]");
  if (a.M == 0) return;
  const cudaStream_t st = cudaStream_t(stream);
  if (a.D <= kDirectMaxD) {
    MIXSCORE_LAUNCH(nearest_kernel<T>, unsigned(a.M), kThreads, 0, st, a, 0, nullptr);
    check(cudaGetLastError(), "nearest kernel launch");
    return;
  }
  if (a.ws_rows < 1) throw std::invalid_argument("mixscore._cuda.nearest: ws_rows must be >= 1");
  T* G = reinterpret_cast<T*>(a.workspace);
  for (int64_t i0 = 0; i0 < a.M; i0 += a.ws_rows) {
    const int64_t m = a.M - i0 < a.ws_rows ? a.M - i0 : a.ws_rows;
    launch_logits<T, T>(a.q + i0 * a.D, a.packed, m, a.N, a.D, G, st);
    MIXSCORE_LAUNCH(nearest_kernel<T>, unsigned(m), kThreads, 0, st, a, i0, G);
    check(cudaGetLastError(), "nearest kernel launch");
  }
}

template void nearest<float>(const NearestArgs<float>&, uintptr_t);
template void nearest<double>(const NearestArgs<double>&, uintptr_t);

}  // namespace cuda
}  // namespace mixscore
