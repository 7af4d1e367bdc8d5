// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11, "Parallel random numbers:
// as easy as 1, 2, 3"), the one generator every mixscore backend uses. A draw is a pure function
// of (seed, sample index, step, position), so samples do not depend on batch size, batch split,
// thread count or backend. Header-only and free of host-only code so CUDA can include it too.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "mixscore/hd.hpp"

namespace mixscore {

struct Philox4x32 {
  uint32_t v[4];
};

// Reserved step numbers for the draws that build the start of a trajectory.
constexpr uint32_t kStepStartNoise = 0xFFFFFFFFu;
constexpr uint32_t kStepStartIndex = 0xFFFFFFFEu;

MIXSCORE_HD inline Philox4x32 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                            uint32_t k0, uint32_t k1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += W0;
      k1 += W1;
    }
    const uint64_t p0 = uint64_t(M0) * c0, p1 = uint64_t(M1) * c2;
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  return {{c0, c1, c2, c3}};
}

// The block for (seed, sample, step, block index j): counter (j, step, sample lo, sample hi),
// key (seed lo, seed hi).
MIXSCORE_HD inline Philox4x32 philox_block(uint64_t seed, uint64_t sample, uint32_t step,
                                           uint32_t j) {
  return philox4x32_10(j, step, uint32_t(sample), uint32_t(sample >> 32), uint32_t(seed),
                       uint32_t(seed >> 32));
}

// A double in [0, 1) from 53 random bits.
MIXSCORE_HD inline double unit_double(uint32_t hi, uint32_t lo) {
  return double(((uint64_t(hi) << 32) | lo) >> 11) * 0x1.0p-53;
}

// log(u) for u in (0, 1] and (sin, cos)(2 pi u) for u in [0, 1) from +, *, / and bit operations
// only: no libm, so scalar and SIMD builds (compiled without FMA contraction) give the same bits
// on every machine. Accurate to a few ulp. static: each instruction-set build keeps its copy.
MIXSCORE_HD static inline double log_unit(double u) {
  uint64_t bits;
  std::memcpy(&bits, &u, sizeof bits);
  const int64_t e = int64_t(bits >> 52) - 1023;  // u >= 2^-53: always a normal number
  const uint64_t mbits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
  double m;
  std::memcpy(&m, &mbits, sizeof m);  // [1, 2)
  const bool big = m > 1.4142135623730951;
  m = big ? 0.5 * m : m;              // [sqrt(1/2), sqrt(2))
  const double ed = double(e + (big ? 1 : 0));
  const double t = (m - 1.0) / (m + 1.0);  // log m = 2 atanh t, |t| < 0.1716
  const double t2 = t * t;
  double p = 1.0 / 23;
  p = p * t2 + 1.0 / 21;
  p = p * t2 + 1.0 / 19;
  p = p * t2 + 1.0 / 17;
  p = p * t2 + 1.0 / 15;
  p = p * t2 + 1.0 / 13;
  p = p * t2 + 1.0 / 11;
  p = p * t2 + 1.0 / 9;
  p = p * t2 + 1.0 / 7;
  p = p * t2 + 1.0 / 5;
  p = p * t2 + 1.0 / 3;
  constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  return ed * kLn2Hi + (ed * kLn2Lo + 2.0 * t * (1.0 + t2 * p));
}

MIXSCORE_HD static inline void sincos_2pi(double u, double* s, double* c) {
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  const int q = int(4.0 * u + 0.5);       // nearest quarter turn, 0..4
  const double x = (u - 0.25 * q) * kTwoPi;  // u - q/4 is exact; |x| <= pi/4
  const double x2 = x * x;
  double ps = -1.0 / 121645100408832000.0;  // -1/19!
  ps = ps * x2 + 1.0 / 355687428096000.0;
  ps = ps * x2 - 1.0 / 1307674368000.0;
  ps = ps * x2 + 1.0 / 6227020800.0;
  ps = ps * x2 - 1.0 / 39916800.0;
  ps = ps * x2 + 1.0 / 362880.0;
  ps = ps * x2 - 1.0 / 5040.0;
  ps = ps * x2 + 1.0 / 120.0;
  ps = ps * x2 - 1.0 / 6.0;
  const double sx = x + x * (x2 * ps);
  double pc = -1.0 / 6402373705728000.0;  // -1/18!
  pc = pc * x2 + 1.0 / 20922789888000.0;
  pc = pc * x2 - 1.0 / 87178291200.0;
  pc = pc * x2 + 1.0 / 479001600.0;
  pc = pc * x2 - 1.0 / 3628800.0;
  pc = pc * x2 + 1.0 / 40320.0;
  pc = pc * x2 - 1.0 / 720.0;
  pc = pc * x2 + 1.0 / 24.0;
  pc = pc * x2 - 0.5;
  const double cx = 1.0 + x2 * pc;
  const int r = q & 3;
  *s = r == 0 ? sx : r == 1 ? cx : r == 2 ? -sx : -cx;
  *c = r == 0 ? cx : r == 1 ? -sx : r == 2 ? -cx : sx;
}

// The standard normals z[2j], z[2j+1] of (seed, sample, step): Box-Muller on block j.
MIXSCORE_HD inline void philox_normal_pair(uint64_t seed, uint64_t sample, uint32_t step,
                                           uint32_t j, double* z0, double* z1) {
  const Philox4x32 b = philox_block(seed, sample, step, j);
  const double r = std::sqrt(-2.0 * log_unit(1.0 - unit_double(b.v[0], b.v[1])));
  double sn, cs;
  sincos_2pi(unit_double(b.v[2], b.v[3]), &sn, &cs);
  *z0 = r * cs;
  *z1 = r * sn;
}

// Standard normals z[0..D) for (seed, sample, step), pair by pair (philox_normal_pair).
// (cpp/src/noise_variant.cpp computes the same numbers for many samples with SIMD.)
MIXSCORE_HD inline void philox_normals(uint64_t seed, uint64_t sample, uint32_t step,
                                       int64_t D, double* z) {
  for (int64_t j = 0; 2 * j < D; ++j) {
    double z1;
    philox_normal_pair(seed, sample, step, uint32_t(j), z + 2 * j, &z1);
    if (2 * j + 1 < D) z[2 * j + 1] = z1;
  }
}

// One uniform in [0, 1) for (seed, sample, step).
MIXSCORE_HD inline double philox_uniform(uint64_t seed, uint64_t sample, uint32_t step) {
  const Philox4x32 b = philox_block(seed, sample, step, 0);
  return unit_double(b.v[0], b.v[1]);
}

// philox_normals for samples first_sample .. first_sample + n - 1 into z (n x D), with the
// SIMD build of this CPU (cpp/src/dispatch.cpp; host only).
void fill_normals(uint64_t seed, int64_t first_sample, int64_t n, uint32_t step, int64_t D,
                  double* z);

}  // namespace mixscore
