// The one exact squared distance (the rule of mixscore/exact.hpp), for the host variants and
// the CUDA kernels alike:
//     t_d = double(x_d) - alpha * double(X_nd);  s_j = sum of t_d^2 over d = j, j + 8, ...
//     d^2 = ((s_0 + s_4) + (s_2 + s_6)) + ((s_1 + s_5) + (s_3 + s_7))
// Include it only where contraction into FMAs is off (exact_variant.cpp: -ffp-contract=off;
// cuda/: --fmad=false): the rule's bits depend on it. In the per-ISA builds it lives in the
// variant's namespace, so the linker never merges the variants' copies.
#pragma once
#include <cstdint>

#include "mixscore/hd.hpp"

namespace mixscore {
#ifdef MIXSCORE_ISA
namespace MIXSCORE_ISA {
#else
namespace device {
#endif

template <typename T>
MIXSCORE_HD inline double exact_sq_rule(const T* __restrict__ x, const T* __restrict__ Xn,
                                        double alpha, int64_t D) {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + 8 <= D; d += 8)
    for (int j = 0; j < 8; ++j) {
      const double t = double(x[d + j]) - alpha * double(Xn[d + j]);
      s[j] += t * t;
    }
  for (int j = 0; d + j < D; ++j) {
    const double t = double(x[d + j]) - alpha * double(Xn[d + j]);
    s[j] += t * t;
  }
  return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

}  // namespace MIXSCORE_ISA / device
}  // namespace mixscore
