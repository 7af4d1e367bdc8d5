// The samplers' Gaussian noise on the GPU from the one Philox header the CPU uses
// (mixscore/philox.hpp): sample i at step s gets the same numbers on every backend. Compiled
// with --fmad=false so Box-Muller rounds as in cpp/src/noise_variant.cpp.
#include "kernels.cuh"
#include "launch.hpp"
#include "mixscore/philox.hpp"

namespace mixscore {
namespace cuda {

__global__ void normals_kernel(uint64_t seed, const int64_t* samples, int64_t n, uint32_t step,
                               int64_t D, double* z) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) mixscore::philox_normals(seed, uint64_t(samples[i]), step, D, z + i * D);
}

void philox_normals(uint64_t seed, const int64_t* samples, int64_t n, uint32_t step, int64_t D,
                    double* z, uintptr_t stream) {
  if (n == 0) return;
  const unsigned blocks = unsigned((n + kThreads - 1) / kThreads);
  MIXSCORE_LAUNCH(normals_kernel, blocks, kThreads, 0, cudaStream_t(stream), seed, samples, n,
                  step, D, z);
  check(cudaGetLastError(), "philox_normals kernel launch");
}

}  // namespace cuda
}  // namespace mixscore
