// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11, "Parallel random numbers:
// as easy as 1, 2, 3"), the one generator every mixscore backend uses. A draw is a pure function
// of (seed, sample index, step, position), so samples do not depend on batch size, batch split,
// thread count or backend. Header-only and free of host-only code so CUDA can include it too.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MIXSCORE_HD __host__ __device__
#else
#define MIXSCORE_HD
#endif

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

// Standard normals z[0..D) for (seed, sample, step): Box-Muller on block j gives z[2j], z[2j+1].
MIXSCORE_HD inline void philox_normals(uint64_t seed, uint64_t sample, uint32_t step,
                                       int64_t D, double* z) {
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  for (int64_t j = 0; 2 * j < D; ++j) {
    const Philox4x32 b = philox_block(seed, sample, step, uint32_t(j));
    const double u1 = 1.0 - unit_double(b.v[0], b.v[1]);  // (0, 1]: log is finite
    const double u2 = unit_double(b.v[2], b.v[3]);
    const double r = std::sqrt(-2.0 * std::log(u1));
    z[2 * j] = r * std::cos(kTwoPi * u2);
    if (2 * j + 1 < D) z[2 * j + 1] = r * std::sin(kTwoPi * u2);
  }
}

// One uniform in [0, 1) for (seed, sample, step).
MIXSCORE_HD inline double philox_uniform(uint64_t seed, uint64_t sample, uint32_t step) {
  const Philox4x32 b = philox_block(seed, sample, step, 0);
  return unit_double(b.v[0], b.v[1]);
}

}  // namespace mixscore
