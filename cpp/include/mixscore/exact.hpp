// The one exact squared distance and its one rounding rule, used for every refinement and for
// the direct path (D < kDirectMaxD):
//     t_d  = double(x_d) - alpha * double(X_nd)         (the product rounded, then the difference)
//     s_j  = sum of t_d^2 over d = j, j + 8, j + 16, ... in increasing d, j = 0..7
//     d^2  = ((s_0 + s_4) + (s_2 + s_6)) + ((s_1 + s_5) + (s_3 + s_7))
//     lam  = d^2 - (2 sigma^2) * log pi_n               (weighted sets only)
// with no FMA contraction (the bodies are compiled only in cpp/src/exact_variant.cpp, with
// -ffp-contract=off and the variant's full optimisation), so every instruction set gives the
// same bits, the column routine below gives the bits of the row routine, and for alpha = 1 the
// NumPy reference (backends/numpy_ref.py) gives them too. (A per-function optimize attribute
// also stopped GCC from vectorizing these loops: 4x slower direct path.)
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>

#ifndef MIXSCORE_ISA
#error "exact.hpp is compiled once per instruction set: define MIXSCORE_ISA"
#endif

#ifdef MIXSCORE_EXACT_DEFINITIONS
#include "mixscore/exact_rule.hpp"
#endif

namespace mixscore {
namespace MIXSCORE_ISA {

// One row: x and X_n of length D. Subtract tw_logw = (2 sigma^2) log pi_n
// (0 for equal weights: d^2 - 0 is d^2).
template <typename T>
double exact_lam(const T* __restrict x, const T* __restrict Xn, double alpha, int64_t D,
                 double tw_logw);

// The same values for nt points stored column-wise (D < 16): column d of point k at
// XT[d * ld + k]. xi is the query in double; with weights (W) tws = 2 sigma^2 and lw the
// points' log pi (without, d^2 - 0 = d^2: the term is left out). Writes L[k] and returns
// min_k L[k]. DC = D for
// D <= 3 (one fused pass); DC = 0 for any D < 16 through 8 lane buffers of nt (lanes,
// scratch) and zeros (nt zeros): a lane that gets no dimension adds +0, which changes no bit.
template <int DC, bool W>
double exact_lam_columns(const double* __restrict xi, double alpha, const double* __restrict XT,
                         int64_t ld, int64_t nt, int64_t D, double tws,
                         const double* __restrict lw, double* __restrict lanes,
                         const double* __restrict zeros, double* __restrict L);

#ifdef MIXSCORE_EXACT_DEFINITIONS
template <typename T>
double exact_lam(const T* __restrict x, const T* __restrict Xn, double alpha, int64_t D,
                 double tw_logw) {
  return exact_sq_rule(x, Xn, alpha, D) - tw_logw;
}

template <int DC, bool W>
double exact_lam_columns(const double* __restrict xi, double alpha, const double* __restrict XT,
                         int64_t ld, int64_t nt, int64_t D, double tws,
                         const double* __restrict lw, double* __restrict lanes,
                         const double* __restrict zeros, double* __restrict L) {
  double lmin = std::numeric_limits<double>::infinity();
  if constexpr (DC > 0) {
    const double* c0 = XT;
    const double* c1 = DC > 1 ? XT + ld : XT;
    const double* c2 = DC > 2 ? XT + 2 * ld : XT;
    const double x0 = xi[0], x1 = DC > 1 ? xi[1] : 0.0, x2 = DC > 2 ? xi[2] : 0.0;
#pragma omp simd reduction(min : lmin)
    for (int64_t k = 0; k < nt; ++k) {
      const double t0 = x0 - alpha * c0[k];
      double sq = t0 * t0;  // lanes 0, 1, 2: s0 | s0 + s1 | (s0 + s2) + s1
      if constexpr (DC == 2) {
        const double t1 = x1 - alpha * c1[k];
        sq = sq + t1 * t1;
      }
      if constexpr (DC == 3) {
        const double t1 = x1 - alpha * c1[k], t2 = x2 - alpha * c2[k];
        sq = (sq + t2 * t2) + t1 * t1;
      }
      const double l = W ? sq - tws * lw[k] : sq;
      L[k] = l;
      lmin = std::min(lmin, l);
    }
  } else {
    for (int64_t d = 0; d < D; ++d) {
      const double* col = XT + d * ld;
      const double xv = xi[d];
      double* S = lanes + (d % 8) * nt;
      if (d < 8) {
#pragma omp simd
        for (int64_t k = 0; k < nt; ++k) {
          const double t = xv - alpha * col[k];
          S[k] = t * t;
        }
      } else {
#pragma omp simd
        for (int64_t k = 0; k < nt; ++k) {
          const double t = xv - alpha * col[k];
          S[k] = S[k] + t * t;
        }
      }
    }
    const double* s[8];
    for (int j = 0; j < 8; ++j) s[j] = j < D ? lanes + j * nt : zeros;
#pragma omp simd reduction(min : lmin)
    for (int64_t k = 0; k < nt; ++k) {
      const double sq = ((s[0][k] + s[4][k]) + (s[2][k] + s[6][k])) +
                        ((s[1][k] + s[5][k]) + (s[3][k] + s[7][k]));
      const double l = W ? sq - tws * lw[k] : sq;
      L[k] = l;
      lmin = std::min(lmin, l);
    }
  }
  return lmin;
}
#endif  // MIXSCORE_EXACT_DEFINITIONS

}  // namespace MIXSCORE_ISA
}  // namespace mixscore
