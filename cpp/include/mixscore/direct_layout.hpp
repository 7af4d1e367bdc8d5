// The direct path's training layout (D < kDirectMaxD), built once per training set: the points
// in k-d leaf order, so that every tile of kDirectTile points is spatially compact, and each
// tile's bounding box and largest log-weight. At small sigma a query's posterior lives in a few
// tiles; the driver leaves out the others after one box test (cpp/src/driver.hpp, against the
// handler's cut).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "mixscore/engine.hpp"

namespace mixscore {

struct DirectLayout {
  std::vector<double> XT;     // D x N, tile order
  std::vector<int64_t> order; // tile position -> original index
  std::vector<double> logw;   // log pi in tile order (empty: equal weights)
  std::vector<double> box;    // per tile: lo[D], hi[D], max log pi (stride 2 D + 1)

  template <typename T>
  DirectLayout(const T* X, int64_t N, int64_t D, const double* logw_orig) {
    order.resize(N);
    std::iota(order.begin(), order.end(), int64_t(0));
    split(X, D, 0, N);
    XT.resize(D * N);
    for (int64_t p = 0; p < N; ++p)
      for (int64_t d = 0; d < D; ++d) XT[d * N + p] = double(X[order[p] * D + d]);
    if (logw_orig) {
      logw.resize(N);
      for (int64_t p = 0; p < N; ++p) logw[p] = logw_orig[order[p]];
    }
    const int64_t ntiles = (N + kDirectTile - 1) / kDirectTile, stride = 2 * D + 1;
    box.resize(ntiles * stride);
    for (int64_t t = 0; t < ntiles; ++t) {
      const int64_t p0 = t * kDirectTile, p1 = std::min(N, p0 + kDirectTile);
      double* b = &box[t * stride];
      for (int64_t d = 0; d < D; ++d) {
        const double* col = &XT[d * N];
        b[d] = *std::min_element(col + p0, col + p1);
        b[D + d] = *std::max_element(col + p0, col + p1);
      }
      b[2 * D] = logw_orig ? *std::max_element(&logw[p0], &logw[p0] + (p1 - p0)) : 0.0;
    }
  }

 private:
  // Median split of order[b, e) along its widest coordinate, at a multiple of the tile size so
  // that leaves are whole tiles. Deterministic: ties are broken by the original index.
  template <typename T>
  void split(const T* X, int64_t D, int64_t b, int64_t e) {
    if (e - b <= kDirectTile) return;
    int64_t dim = 0;
    double widest = -1.0;
    for (int64_t d = 0; d < D; ++d) {
      double lo = INFINITY, hi = -INFINITY;
      for (int64_t p = b; p < e; ++p) {
        const double v = double(X[order[p] * D + d]);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      if (hi - lo > widest) widest = hi - lo, dim = d;
    }
    const int64_t tiles = (e - b + kDirectTile - 1) / kDirectTile;
    const int64_t m = b + (tiles + 1) / 2 * kDirectTile;
    std::nth_element(order.begin() + b, order.begin() + m, order.begin() + e,
                     [X, D, dim](int64_t i, int64_t j) {
                       const T xi = X[i * D + dim], xj = X[j * D + dim];
                       return xi < xj || (xi == xj && i < j);
                     });
    split(X, D, b, m);
    split(X, D, m, e);
  }
};

}  // namespace mixscore
