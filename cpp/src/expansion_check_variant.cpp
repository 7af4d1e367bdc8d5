// Benchmark/test helper: the GEMM expansion of the squared distances and its rigorous bound,
// from the engine's own primitives (the prepared set's packing, the packed GEMM, plain or
// precise, and bound.hpp), entry by entry, so that tests can check |A - d^2| <= E against an
// independent evaluation of d^2 (tests/test_exact_rule.py). Compiled per instruction set.
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "mixscore/aligned.hpp"
#include "mixscore/bound.hpp"
#include "mixscore/engine.hpp"
#include "mixscore/limits.hpp"
#include "mixscore/packgemm.hpp"

namespace mixscore {
namespace MIXSCORE_ISA {

void expansion_check(const float* X, int64_t N, const float* x, int64_t M, int64_t D,
                     double alpha, bool precise, double* A, double* E) {
  using T = float;
  constexpr int MR = Blocking<T>::MR, NR = Blocking<T>::NR;
  std::vector<double> mu(D, 0.0), nc2(N);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t d = 0; d < D; ++d) mu[d] += double(X[n * D + d]);
  double mu_norm = 0.0;
  for (int64_t d = 0; d < D; ++d) {
    mu[d] /= double(N);
    mu_norm += mu[d] * mu[d];
  }
  mu_norm = std::sqrt(mu_norm);
  for (int64_t n = 0; n < N; ++n) {  // the prepared set's norms (prepared.hpp)
    double s = 0.0;
    for (int64_t d = 0; d < D; ++d) {
      const double r = double(T(double(X[n * D + d]) - mu[d]));
      s += r * r;
    }
    nc2[n] = s;
  }
  const int64_t ntiles = (N + kTrainTile - 1) / kTrainTile;
  AlignedVector<T> packed(ntiles * kTrainTile * D);
  pack_tiles<T>(X, mu.data(), N, D, kTrainTile, packed.data(), 1);
  // the driver's query side (driver.hpp, load)
  const int64_t nblk = (M + MR - 1) / MR;
  std::vector<T> xq(nblk * MR * D, T(0));
  std::vector<double> xn2(M);
  std::vector<ExpansionBound> bnd(M);
  const double u = std::numeric_limits<T>::epsilon() / 2;
  for (int64_t i = 0; i < M; ++i) {
    double n2 = 0.0;
    for (int64_t d = 0; d < D; ++d) {
      const double xc = double(x[i * D + d]) - alpha * mu[d];
      n2 += xc * xc;
      xq[i * D + d] = T(xc);
    }
    xn2[i] = n2;
    bnd[i] = ExpansionBound::make(std::sqrt(n2), std::abs(alpha) * mu_norm, D, u,
                                  precise ? Blocking<T>::KC : 0);
  }
  AlignedVector<T> Ap(nblk * MR * D), G(nblk * MR * kTrainTile);
  pack_a<T>(nblk, D, xq.data(), D, Ap.data());
  std::vector<int32_t> blocks(nblk);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::vector<double> G64(precise ? G.size() : 0);
  const T* ApD = Ap.data();
  for (int64_t t = 0; t < ntiles; ++t) {
    const int64_t n0 = t * kTrainTile, nt = std::min(kTrainTile, N - n0);
    gemm_packed<T>(blocks.data(), int(nblk), (nt + NR - 1) / NR, D,
                   [ApD, D](int32_t b) { return APacked<T>{ApD + int64_t(b) * D * MR}; },
                   packed.data() + n0 * D, G.data(), kTrainTile,
                   precise ? G64.data() : nullptr);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < nt; ++k) {
        const int64_t n = n0 + k;
        A[i * N + n] = xn2[i] + -2.0 * alpha * double(G[i * kTrainTile + k]) +
                       alpha * alpha * nc2[n];
        E[i * N + n] = bnd[i](std::abs(alpha) * std::sqrt(nc2[n]));
      }
  }
}

}  // namespace MIXSCORE_ISA
}  // namespace mixscore
