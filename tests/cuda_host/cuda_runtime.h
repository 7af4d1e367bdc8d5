// A CPU stand-in for the part of the CUDA runtime that cuda/ uses, so the kernels compile as
// plain C++ (g++ -x c++ -I tests/cuda_host) and run on the CPU: the logic of every kernel
// (indexing, tiling, barriers, chunking, bounds, refinement) is then tested without a GPU
// (tests/test_cuda_host.py). It says nothing about speed, coalescing or register limits.
//
// A launch (MIXSCORE_LAUNCH, the one launch path of cuda/) runs the blocks one after another;
// a block's threads are fibers (ucontext) on one OS thread. A fiber runs until it reaches a
// barrier (__syncthreads, __syncthreads_count, __syncthreads_or) or returns; when every fiber
// has reached the barrier the next phase starts. A barrier that some threads of a block skip
// (they returned) is reported and aborts: on a GPU it is undefined. __shared__ variables are
// static storage, shared by the block's fibers. The order in which a phase runs its fibers is
// MIXSCORE_HOST_ORDER: "forward" (default), "reverse" or "shuffle" (a fixed permutation per
// block and phase): a missing barrier shows as a result that depends on it. The device's
// compute capability is MIXSCORE_HOST_CC (default 7: SIMT products; with MIXSCORE_WMMA_SHIM
// defined, 8 or more runs the tensor-core kernels on the WMMA stand-in of mma_stand_in.h).
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

using std::fma;
using std::fmin;
using std::isfinite;

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct float4 {
  float x, y, z, w;
};
struct double2 {
  double x, y;
};

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

// --- the runtime API ----------------------------------------------------------------------
enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
};
struct CUstream_st;
using cudaStream_t = CUstream_st*;
struct HostEvent {
  std::chrono::steady_clock::time_point t;
};
using cudaEvent_t = HostEvent*;

inline const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : "host stand-in error";
}
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) { return *d = 0, cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* n) { return *n = 1, cudaSuccess; }
// 2 SMs; compute capability MIXSCORE_HOST_CC (default 7: the SIMT products; 8 or more: the
// tensor-core products through the WMMA stand-in, mma_stand_in.h).
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  const char* cc = std::getenv("MIXSCORE_HOST_CC");
  *v = a == cudaDevAttrComputeCapabilityMajor ? (cc ? std::atoi(cc) : 7) : 2;
  return cudaSuccess;
}
template <typename T>
cudaError_t cudaMalloc(T** p, size_t n) {
  *p = static_cast<T*>(std::aligned_alloc(256, (n + 255) / 256 * 256));
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFree(void* p) { return std::free(p), cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t = nullptr) {
  return std::memset(p, v, n), cudaSuccess;
}
enum cudaMemcpyKind { cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
// Launches run when queued, so the stream is always drained: copies are immediate.
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind,
                                   cudaStream_t = nullptr) {
  return std::memmove(dst, src, n), cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaMallocHost(void** p, size_t n) {
  *p = std::malloc(n);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
constexpr unsigned cudaEventBlockingSync = 1, cudaEventDisableTiming = 2;
inline cudaError_t cudaEventCreate(cudaEvent_t* e) { return *e = new HostEvent, cudaSuccess; }
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  return cudaEventCreate(e);
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) { return delete e, cudaSuccess; }
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = nullptr) {
  return e->t = std::chrono::steady_clock::now(), cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}

// --- blocks as fibers -----------------------------------------------------------------------
namespace mixscore_host {

constexpr size_t kStackBytes = 512 * 1024;  // per thread: the kernels' register tiles

struct Fiber {
  ucontext_t ctx;
  bool done = false;
};

struct Block {
  ucontext_t scheduler;
  std::vector<Fiber> fibers;
  std::unique_ptr<char[]> stacks;
  size_t capacity = 0;
  int current = -1;
  int count = 0, result = 0;  // __syncthreads_count: this phase's sum, the last phase's
  const std::function<void()>* body = nullptr;
};
inline Block block;

inline void set_thread(unsigned i) {
  threadIdx.x = i % blockDim.x;
  threadIdx.y = i / blockDim.x % blockDim.y;
  threadIdx.z = i / (blockDim.x * blockDim.y);
}

inline void fiber_entry() {
  const int i = block.current;
  (*block.body)();
  block.fibers[i].done = true;  // uc_link returns to the scheduler
}

inline void yield() {
  const int i = block.current;
  swapcontext(&block.fibers[i].ctx, &block.scheduler);
  block.current = i;
  set_thread(unsigned(i));
}

inline std::vector<int> phase_order(int n, unsigned seed) {
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  const char* how = std::getenv("MIXSCORE_HOST_ORDER");
  const std::string mode = how ? how : "forward";
  if (mode == "reverse") std::reverse(order.begin(), order.end());
  if (mode == "shuffle") std::shuffle(order.begin(), order.end(), std::mt19937(seed));
  return order;
}

inline void run_block(unsigned nthreads, unsigned block_id, const std::function<void()>& body) {
  Block& b = block;
  if (b.capacity < nthreads) {
    b.stacks.reset(new char[nthreads * kStackBytes]);
    b.capacity = nthreads;
  }
  b.fibers.assign(nthreads, Fiber{});
  b.body = &body;
  b.count = b.result = 0;
  for (unsigned i = 0; i < nthreads; ++i) {
    Fiber& f = b.fibers[i];
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = b.stacks.get() + i * kStackBytes;
    f.ctx.uc_stack.ss_size = kStackBytes;
    f.ctx.uc_link = &b.scheduler;
    makecontext(&f.ctx, fiber_entry, 0);
  }
  for (unsigned phase = 0;; ++phase) {
    int waiting = 0, finished = 0;
    for (int i : phase_order(int(nthreads), block_id * 7919u + phase)) {
      if (b.fibers[i].done) continue;
      b.current = i;
      set_thread(unsigned(i));
      swapcontext(&b.scheduler, &b.fibers[i].ctx);
      (b.fibers[i].done ? finished : waiting) += 1;
    }
    if (waiting == 0) break;
    if (finished > 0) {
      std::fprintf(stderr, "cuda host stand-in: in block %u, %d threads returned while %d "
                   "wait at a barrier (undefined on a GPU)\n", block_id, finished, waiting);
      std::abort();
    }
    b.result = b.count;
    b.count = 0;
  }
}

inline void launch(dim3 grid, dim3 threads, const std::function<void()>& body) {
  gridDim = grid;
  blockDim = threads;
  const unsigned n = threads.x * threads.y * threads.z;
  unsigned id = 0;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x, ++id) {
        blockIdx.x = x, blockIdx.y = y, blockIdx.z = z;
        run_block(n, id, body);
      }
}

}  // namespace mixscore_host

inline void __syncthreads() { mixscore_host::yield(); }
inline int __syncthreads_count(int pred) {
  mixscore_host::block.count += pred != 0;
  mixscore_host::yield();
  return mixscore_host::block.result;
}
inline int __syncthreads_or(int pred) { return __syncthreads_count(pred) != 0; }
// The kernels call it where the whole block does (store_fragment): a block barrier is stronger.
inline void __syncwarp() { __syncthreads(); }

#ifdef MIXSCORE_WMMA_SHIM
#include "mma_stand_in.h"
#endif

#define MIXSCORE_LAUNCH(kernel, grid, threads, shmem, stream, ...) \
  ::mixscore_host::launch(dim3(grid), dim3(threads), [&] { kernel(__VA_ARGS__); })
