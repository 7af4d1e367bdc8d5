// The one rigorous bound of the GEMM expansion, used by every handler (per tile by the
// posterior, per entry by the top-k).
//
// Quantities (float64 unless said): x' = fl(x - alpha mu) the shifted query, q = fl_T(x'),
// p_n = fl_T(fl(X_n - mu)) the prepared centred row, G = fl_T(q . p_n) from the packed GEMM (one
// FMA chain or any order), a = |x'|, b = |alpha| |p_n|, u = unit roundoff of T, u64 = 2^-53,
// gamma = D u / (1 - D u). (The precise product, packgemm.hpp, sums chains of at most `chunk`
// terms in float64 and rounds once to T: gamma = (g_c + g64 (1 + g_c)) (1 + u) + u with
// g_c = c u / (1 - c u), c = min(chunk, D), g64 = s u64 / (1 - s u64), s = ceil(D / c) slices.)
// The expansion
//     A = fl(|x'|^2) - 2 alpha G + alpha^2 fl(|p_n|^2)
// estimates d^2 = |x - alpha X_n|^2 (the real value; the exact routine, exact.hpp, rounds it
// to a relative 2^-50). With v = x' - alpha p_n, |v|^2 = a^2 - 2 alpha x'.p + alpha^2 |p|^2:
//   dot product    |2 alpha (G - x'.p)| <= 2 (u + gamma (1 + u)) a b     (rounding q, then G)
//   shifts         |x - alpha X_n - v| <= r = rho + sig b,
//                  rho = u64 (1 + u64) (|alpha| |mu| + a)                  (x' in float64)
//                  sig = u2 / (1 - u2), u2 = u + u64 + u u64                (p_n in T)
//                  so |d^2 - |v|^2| <= 2 (a + b) r + r^2
//   float64 norms and the sum of four terms: (D + 9) u64 (a + b)^2.
// E(b) = 1.01 (sum of these) bounds |A - d^2|; the factor covers the rounding of E itself.
// Every coefficient is >= 0, so E grows with b: a tile's bound is E at its largest b. Valid for
// any sign of alpha (only |alpha| enters).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "mixscore/hd.hpp"

namespace mixscore {

struct ExpansionBound {
  double k0 = 0, k1 = 0, k2 = 0;  // E(b) = k0 + k1 b + k2 b^2

  // gamma_n = n v / (1 - n v): the relative error bound of an n-term chain with roundoff v.
  MIXSCORE_HD static double chain(double n, double v) {
    return n * v < 0.5 ? n * v / (1.0 - n * v) : INFINITY;
  }

  // a = |x'|, alpha_mu = |alpha| |mu|, u = unit roundoff of the GEMM's type, D the dimension;
  // chunk: the length of the GEMM's chains in T when shorter than D (the precise product).
  MIXSCORE_HD static ExpansionBound make(double a, double alpha_mu, int64_t D, double u,
                                         int64_t chunk = 0) {
    const double u64 = 0x1p-53;
    double gamma = chain(double(D), u);
    if (chunk > 0 && chunk < D) {
      const double gc = chain(double(chunk), u);
      const double g64 = chain(double((D + chunk - 1) / chunk), u64);
      gamma = (gc + g64 * (1.0 + gc)) * (1.0 + u) + u;
    }
    const double rho = u64 * (1.0 + u64) * (alpha_mu + a);
    const double u2 = u + u64 + u * u64, sig = u2 / (1.0 - u2);
    const double m = double(D + 9) * u64, c = 1.01;
    ExpansionBound e;
    e.k0 = c * (2.0 * a * rho + rho * rho + m * a * a);
    e.k1 = c * (2.0 * (u + gamma * (1.0 + u)) * a + 2.0 * rho + 2.0 * a * sig +
                2.0 * rho * sig + 2.0 * m * a);
    e.k2 = c * (2.0 * sig + sig * sig + m);
    return e;
  }
  MIXSCORE_HD double operator()(double b) const { return k0 + b * (k1 + b * k2); }
};

}  // namespace mixscore
