// The card's float32 FMA peak, measured (bench/gpu_compare.py reports achieved rates against
// it): every thread runs 8 independent FMA chains, enough blocks to fill every SM; the time
// comes from CUDA events around one launch after a warm-up.
#include "kernels.cuh"
#include "launch.hpp"

namespace mixscore {
namespace cuda {

constexpr int kChains = 8;

__global__ void fma_peak_kernel(float* sink, int iters) {
  float v[kChains];
#pragma unroll
  for (int j = 0; j < kChains; ++j) v[j] = 1.0f + 1e-7f * float(threadIdx.x + j);
  const float b = 0.9999999f, c = 1e-7f;
  for (int i = 0; i < iters; ++i)
#pragma unroll
    for (int j = 0; j < kChains; ++j) v[j] = fmaf(v[j], b, c);
  float s = 0;
#pragma unroll
  for (int j = 0; j < kChains; ++j) s += v[j];
  if (s == -1.0f) *sink = s;  // never true: keeps the chains live
}

double fp32_fma_peak() {
  int dev = 0, sms = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "SM count");
  float* sink = nullptr;
  check(cudaMalloc(&sink, sizeof(float)), "cudaMalloc");
  const unsigned blocks = unsigned(sms) * 8;
  const int iters = 1 << 14;
  cudaEvent_t t0, t1;
  check(cudaEventCreate(&t0), "cudaEventCreate");
  check(cudaEventCreate(&t1), "cudaEventCreate");
  MIXSCORE_LAUNCH(fma_peak_kernel, blocks, kThreads, 0, cudaStream_t(0), sink, iters);  // warm-up
  check(cudaEventRecord(t0, 0), "cudaEventRecord");
  MIXSCORE_LAUNCH(fma_peak_kernel, blocks, kThreads, 0, cudaStream_t(0), sink, iters);
  check(cudaEventRecord(t1, 0), "cudaEventRecord");
  check(cudaEventSynchronize(t1), "cudaEventSynchronize");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, t0, t1), "cudaEventElapsedTime");
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  cudaFree(sink);
  return 2.0 * kChains * double(iters) * kThreads * blocks / (double(ms) * 1e-3);
}

}  // namespace cuda
}  // namespace mixscore
