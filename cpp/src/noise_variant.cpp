// The samplers' noise for many samples at once, compiled once per instruction set with
// -ffp-contract=off: the loops below vectorize across Philox blocks, and because they use only
// +, *, /, sqrt and bit operations (mixscore/philox.hpp) every build gives the bits of the
// scalar philox_normals.
#include <vector>

#include "mixscore/philox.hpp"

namespace mixscore {
namespace MIXSCORE_ISA {

void fill_normals(uint64_t seed, int64_t first_sample, int64_t n, uint32_t step, int64_t D,
                  double* z) {
  const int64_t J = (D + 1) / 2;
  std::vector<double> u1(J), u2(J), r(J), sn(J), cs(J);
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t sample = uint64_t(first_sample + i);
    const uint32_t lo = uint32_t(sample), hi = uint32_t(sample >> 32);
    for (int64_t j = 0; j < J; ++j) {
      const Philox4x32 b = philox4x32_10(uint32_t(j), step, lo, hi, k0, k1);
      u1[j] = 1.0 - unit_double(b.v[0], b.v[1]);
      u2[j] = unit_double(b.v[2], b.v[3]);
    }
    for (int64_t j = 0; j < J; ++j) r[j] = std::sqrt(-2.0 * log_unit(u1[j]));
    for (int64_t j = 0; j < J; ++j) sincos_2pi(u2[j], &sn[j], &cs[j]);
    double* zi = z + i * D;
    for (int64_t j = 0; j < D / 2; ++j) {
      zi[2 * j] = r[j] * cs[j];
      zi[2 * j + 1] = r[j] * sn[j];
    }
    if (D % 2) zi[D - 1] = r[J - 1] * cs[J - 1];
  }
}

}  // namespace MIXSCORE_ISA
}  // namespace mixscore
