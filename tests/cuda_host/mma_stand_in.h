// A CPU stand-in for the WMMA fragments the tensor-core logits kernels use
// (cuda/tensor_logits.cuh, compiled with MIXSCORE_WMMA_SHIM): every thread holds its warp's
// whole fragment (row-major), loads, multiplies and stores it itself, so the warp-collective
// calls give every lane the same values. Products are those of the hardware's input formats
// (float64 exactly; TF32 inputs, whose products are exact in float32) accumulated in k order in
// the accumulator's type: one model of the tensor cores' accumulation, the one the kernels'
// error bound is written for. What this checks is the kernels' indexing, staging and split;
// the real units' rounding is for a GPU to measure.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

template <typename T>
struct storage {
  using type = T;
};
template <>
struct storage<precision::tf32> {
  using type = float;
};

template <typename Use, int M, int N, int K>
struct shape {  // rows x cols of the fragment's matrix
  static constexpr int rows = M, cols = N;
};
template <int M, int N, int K>
struct shape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct shape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  using element_type = typename storage<T>::type;
  static constexpr int rows = shape<Use, M, N, K>::rows, cols = shape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  element_type x[num_elements];
};

template <typename F, typename V>
inline void fill_fragment(F& f, V v) {
  for (auto& e : f.x) e = typename F::element_type(v);
}

// element (r, c) of the fragment's matrix from memory with leading dimension ldm
template <typename Use, int M, int N, int K, typename T, typename Layout, typename P>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const P* p, unsigned ldm) {
  using F = fragment<Use, M, N, K, T, Layout>;
  constexpr bool col = std::is_same_v<Layout, col_major>;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      f.x[r * F::cols + c] = col ? p[c * ldm + r] : p[r * ldm + c];
}

template <int M, int N, int K, typename T, typename P>
inline void store_matrix_sync(P* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm,
                              layout_t layout) {
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c)
      (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * N + c];
}

template <int M, int N, int K, typename TA, typename LA, typename LB, typename TC>
inline void mma_sync(fragment<accumulator, M, N, K, TC>& d,
                     const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TA, LB>& b,
                     const fragment<accumulator, M, N, K, TC>& c) {
  fragment<accumulator, M, N, K, TC> out;
  for (int r = 0; r < M; ++r)
    for (int n = 0; n < N; ++n) {
      TC s = c.x[r * N + n];
      for (int k = 0; k < K; ++k) s += TC(a.x[r * K + k]) * TC(b.x[k * N + n]);
      out.x[r * N + n] = s;
    }
  d = out;
}

// fp32 -> TF32 (10 mantissa bits), round to nearest with ties away from zero (cvt.rna.tf32).
inline float __float_to_tf32(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
  std::memcpy(&v, &u, 4);
  return v;
}

}  // namespace wmma
}  // namespace nvcuda
