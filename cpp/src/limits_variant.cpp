// Benchmark helpers that measure this machine's limits for bench/compare.py: the float32 FMA
// peak and the throughput of the engine's own exp. Compiled once per instruction set like the
// engine, so the dispatched variant measures the instructions the engine actually runs.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <immintrin.h>

#include "mixscore/fastexp.hpp"
#include "mixscore/limits.hpp"

namespace mixscore {
namespace MIXSCORE_ISA {

namespace {

volatile double sink;  // results land here so the compiler must do the work

// Runs body(iters) on `threads` OpenMP threads: doubles iters until a run lasts a tenth of
// `seconds`, then times three runs scaled to a third of `seconds` each and keeps the best (the
// machine is shared; a preempted thread only ever makes a run slower). Returns the work units
// done per second: iters * (threads that actually ran) / wall time.
template <class Body>
double rate(int threads, double seconds, Body body) {
  if (threads <= 0) threads = omp_get_max_threads();
  int ran = 0;
  auto run = [&](int64_t iters) {
    double total = 0.0;
    int team = 0;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : total, team)
    {
      total += body(iters);
      team += 1;
    }
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink = total;
    ran = team;
    return wall;
  };
  int64_t iters = 1000;
  double wall = run(iters);
  while (wall < 0.1 * seconds && iters < (int64_t(1) << 40)) wall = run(iters *= 2);
  iters = int64_t(double(iters) * seconds / (3 * wall)) + 1;
  double best = 0.0;
  for (int r = 0; r < 3; ++r) {
    wall = run(iters);
    best = std::max(best, double(iters) * ran / wall);
  }
  return best;
}

}  // namespace

double fma_peak_gflops(int threads, double seconds) {
  // Independent accumulator chains kept in registers: enough to cover FMA latency x pipes
  // (4 x 2 on current cores). AVX-512 has 32 vector registers; AVX2/SSE have 16, so 12 chains
  // plus the two constants fit without spilling.
#if defined(__AVX512F__)
  using V = __m512;
  constexpr int kLanes = 16, kChains = 16;
  auto set1 = [](float v) { return _mm512_set1_ps(v); };
  auto step = [](V acc, V m, V c) { return _mm512_fmadd_ps(acc, m, c); };
  auto lanes_sum = [](V v) { return double(_mm512_reduce_add_ps(v)); };
#elif defined(__AVX2__) && defined(__FMA__)
  using V = __m256;
  constexpr int kLanes = 8, kChains = 12;
  auto set1 = [](float v) { return _mm256_set1_ps(v); };
  auto step = [](V acc, V m, V c) { return _mm256_fmadd_ps(acc, m, c); };
  auto lanes_sum = [](V v) {
    alignas(32) float f[8];
    _mm256_store_ps(f, v);
    return double(f[0]) + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
  };
#else
  using V = __m128;
  constexpr int kLanes = 4, kChains = 12;
  auto set1 = [](float v) { return _mm_set1_ps(v); };
  auto step = [](V acc, V m, V c) { return _mm_add_ps(_mm_mul_ps(acc, m), c); };
  auto lanes_sum = [](V v) {
    alignas(16) float f[4];
    _mm_store_ps(f, v);
    return double(f[0]) + f[1] + f[2] + f[3];
  };
#endif
  auto body = [&](int64_t iters) {
    // acc <- acc * m + c converges to c / (1 - m): no overflow, no denormals.
    const V m = set1(0.999f), c = set1(1e-3f);
    V acc[kChains];
    for (int j = 0; j < kChains; ++j) acc[j] = set1(float(j));
    for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
      for (int j = 0; j < kChains; ++j) acc[j] = step(acc[j], m, c);
    }
    double s = 0.0;
    for (int j = 0; j < kChains; ++j) s += lanes_sum(acc[j]);
    return s;
  };
  // Multiply and add count as 2 flops per lane, fused or not.
  return rate(threads, seconds, body) * (2.0 * kLanes * kChains) / 1e9;
}

double exp_throughput(bool single, int threads, double seconds) {
  // 2048 arguments (8 or 16 KiB) stay in L1, so this is the exp's arithmetic throughput.
  constexpr int kN = 2048;
  auto measure = [&](auto zero, auto fn) {
    using T = decltype(zero);
    auto body = [&](int64_t iters) {
      alignas(64) T buf[kN];
      for (int k = 0; k < kN; ++k) buf[k] = T(-30.0 * k / (kN - 1));  // gaps in [-30, 0]
      double total = 0.0;
      for (int64_t i = 0; i < iters; ++i) {
        T sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int k = 0; k < kN; ++k) sum += fn(buf[k]);
        total += double(sum);
        // The buffer "may have changed": the compiler cannot hoist the loop out of the repeats.
        asm volatile("" : : "r"(buf) : "memory");
      }
      return total;
    };
    return rate(threads, seconds, body) * kN;
  };
  if (single) return measure(0.0f, [](float x) { return exp_nonpositive_f(x); });
  return measure(0.0, [](double x) { return exp_nonpositive(x); });
}

void expansion_check(const float*, int64_t, const float*, int64_t, int64_t, double, bool, double*,
                     double*);  // expansion_check_variant.cpp

extern const LimitsVariant kLimits = {&fma_peak_gflops, &exp_throughput, &expansion_check};

}  // namespace MIXSCORE_ISA
}  // namespace mixscore
