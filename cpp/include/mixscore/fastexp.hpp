// Branch-free exp for the softmax weights, written so that compilers vectorize it.
// Arguments are gaps x in [-cutoff, 0]; relative error below 2e-16 on that range
// (tests/test_core_exp.py measures it against std::exp).
#pragma once
#include <cstdint>
#include <cstring>

namespace mixscore {

// Always inlined: the engine's loops vectorize only with the exp inside them (with both
// handlers in one translation unit GCC's inlining budget otherwise left it out of line, a 4x
// slower direct path).

// static: each per-ISA engine object keeps its own copy (no linker merging across ISAs).
__attribute__((always_inline)) static inline double exp_nonpositive(double x) {
  x = x < -700.0 ? -700.0 : x;
  const double log2e = 1.4426950408889634;
  const double ln2_hi = 6.93147180369123816490e-01;
  const double ln2_lo = 1.90821492927058770002e-10;
  const double shifter = 6755399441055744.0;  // 1.5 * 2^52: round to nearest integer
  double kd = x * log2e + shifter;
  int64_t kbits;
  std::memcpy(&kbits, &kd, sizeof kbits);
  kd -= shifter;
  double r = (x - kd * ln2_hi) - kd * ln2_lo;  // |r| <= ln2 / 2
  // Taylor series of e^r to degree 13: truncation error < 1e-17 for |r| <= 0.347.
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // 2^k from the low bits of the shifted sum; k >= -1010 here, so the result is normal.
  int64_t ebits = (kbits + 1023) << 52;
  double scale;
  std::memcpy(&scale, &ebits, sizeof scale);
  return p * scale;
}

// Single-precision version for weights that are stored in float32 anyway (the float32 engine's
// GEMM weights and direct-path weights): arguments in [-87, 0], relative error below 3e-7
// (a few float ulps, against 6e-8 for rounding the weight to float). 16 lanes per AVX-512 op.
__attribute__((always_inline)) static inline float exp_nonpositive_f(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float shifter = 12582912.0f;  // 1.5 * 2^23
  float kd = x * 1.44269504f + shifter;
  int32_t kbits;
  std::memcpy(&kbits, &kd, sizeof kbits);
  kd -= shifter;
  float r = (x - kd * 0.693145751953125f) - kd * 1.428606765330187e-06f;  // |r| <= ln2 / 2
  // Taylor series to degree 7: truncation error < 6e-9 for |r| <= 0.347.
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t ebits = (kbits + 127) << 23;  // k >= -126: the result is normal
  float scale;
  std::memcpy(&scale, &ebits, sizeof scale);
  return p * scale;
}

}  // namespace mixscore
