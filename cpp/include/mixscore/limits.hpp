// Benchmark helpers that measure the machine's limits (cpp/src/limits_variant.cpp, one variant
// per instruction set, each with its table below; module mixscore._bench). Not used by the
// engine itself.
#pragma once
#include <cstdint>

namespace mixscore {

struct LimitsVariant {
  // float32 FMA throughput in GFLOP/s (2 flops per lane) over `threads` OpenMP threads (0:
  // all), run for about `seconds`.
  double (*fma_peak_gflops)(int threads, double seconds);
  // Evaluations per second of the engine's exp (exp_nonpositive_f if single, else
  // exp_nonpositive) on an L1-resident buffer, vectorized as in the engine.
  double (*exp_throughput)(bool single, int threads, double seconds);
  // For tests: the float32 GEMM expansion A (M x N) of |x_i - alpha X_n|^2 and its rigorous
  // bound E (expansion_check_variant.cpp), from the plain or the precise product.
  void (*expansion)(const float* X, int64_t N, const float* x, int64_t M, int64_t D,
                    double alpha, bool precise, double* A, double* E);
};
namespace generic { extern const LimitsVariant kLimits; }
namespace avx2 { extern const LimitsVariant kLimits; }
namespace avx512 { extern const LimitsVariant kLimits; }

}  // namespace mixscore
