// Device helpers shared by the CUDA kernels (posterior.cu, nearest.cu): the GEMM-expansion
// estimate of a squared distance, the one exact squared distance, and deterministic block
// reductions. Compiled with --fmad=false (CMakeLists.txt) so the exact distance rounds like
// the CPU engine's.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "mixscore/bound.hpp"
#include "mixscore/exact_rule.hpp"

namespace mixscore {
namespace cuda {

// Every launch goes through this macro, so the kernels also compile as plain C++ against a CPU
// stand-in of the runtime (tests/cuda_host/cuda_runtime.h defines it) to test their logic
// where no GPU is.
#ifndef MIXSCORE_LAUNCH
#define MIXSCORE_LAUNCH(kernel, grid, block, shmem, stream, ...) \
  kernel<<<(grid), (block), (shmem), (stream)>>>(__VA_ARGS__)
#endif

constexpr int kThreads = 256;  // threads per block (one block per query)

// A CUDA error as an exception naming what failed.
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("mixscore._cuda: ") + what + ": " +
                             cudaGetErrorString(e));
}

// One query's view: q = fl_T(x - alpha mu) and the query x itself.
// Estimate of |x - alpha X_n|^2 from the prepared row p_n = fl_T(X_n - mu) (GEMM expansion
// about the mean): xs2 - 2 alpha (q . p_n) + alpha^2 |p_n|^2, the product as one FMA chain in
// T (bound.hpp covers any order), the rest in double.
template <typename T>
__device__ inline double approx_sq(const T* __restrict__ q, const T* __restrict__ p, int64_t D,
                                   double xs2, double alpha, double p2) {
  T g = T(0);
  for (int64_t d = 0; d < D; ++d) g = fma(q[d], p[d], g);
  return xs2 - 2.0 * alpha * double(g) + (alpha * alpha) * p2;
}

// |x - alpha X_n|^2 by the one exact rule (mixscore/exact_rule.hpp; --fmad=false keeps it).
template <typename T>
__device__ inline double exact_sq(const T* __restrict__ x, const T* __restrict__ Xn, int64_t D,
                                  double alpha) {
  return device::exact_sq_rule(x, Xn, alpha, D);
}

// Sum over the block in a fixed tree (every thread gets it).
__device__ inline double block_sum(double v, double* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  const double r = sh[0];
  __syncthreads();
  return r;
}

// Block-wide minimum of v (every thread gets it); a fixed tree, so deterministic.
__device__ inline double block_min(double v, double* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] = fmin(sh[threadIdx.x], sh[threadIdx.x + s]);
    __syncthreads();
  }
  const double r = sh[0];
  __syncthreads();
  return r;
}

// Block-wide minimum of (v, i) in lexicographic order (the lower index wins exact ties);
// every thread gets both. Returns the thread that held it through *owner.
__device__ inline void block_argmin(double* v, int64_t* i, int* owner, double* shv,
                                    int64_t* shi, int* sho) {
  shv[threadIdx.x] = *v;
  shi[threadIdx.x] = *i;
  sho[threadIdx.x] = threadIdx.x;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const int o = threadIdx.x + s;
      if (shv[o] < shv[threadIdx.x] || (shv[o] == shv[threadIdx.x] && shi[o] < shi[threadIdx.x])) {
        shv[threadIdx.x] = shv[o];
        shi[threadIdx.x] = shi[o];
        sho[threadIdx.x] = sho[o];
      }
    }
    __syncthreads();
  }
  *v = shv[0];
  *i = shi[0];
  *owner = sho[0];
  __syncthreads();
}

}  // namespace cuda
}  // namespace mixscore
