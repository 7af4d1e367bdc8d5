// MIXSCORE_HD marks arithmetic usable on the host and on a device: empty for the host compiler,
// __host__ __device__ under nvcc (the CUDA driver reuses the bound and the handlers).
#pragma once
#if defined(__CUDACC__)
#define MIXSCORE_HD __host__ __device__
#else
#define MIXSCORE_HD
#endif
