// The GEMM-shaped stages on packed panels: C[i][j] = sum_k A[i][k] B[k][j].
//
// Why not BLAS: OpenBLAS (and MKL) results for a row depend on the row's position inside the
// call (edge kernels, different FMA grouping), so a query's score would change with how the
// queries were split into batches. Here every C[i][j] is one sequential FMA chain over k in
// increasing order, started from +0, whatever the blocking, the row's place in its block or the
// panel: bit-identical for any batch split or thread count.
//
// Layout (Goto-style): A is packed in row blocks of MR rows, k-major (Ap[blk][k][MR]), or read
// in place through an index list; B is packed in panels of NR columns, k-major (Bp[p][k][NR],
// zero-padded to whole panels) so that a KC x NR slice is contiguous and stays in L1 (the
// previous unpacked layout had a 2 KiB row stride that mapped a whole slice onto two L1 sets).
// A zero column of B or a zero A entry adds +-0 to a chain that is never -0, so adding or
// leaving out all-zero k (compaction) does not change any bit.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <type_traits>
#include <vector>

#include "mixscore/aligned.hpp"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#ifndef MIXSCORE_ISA
#error "packgemm.hpp is compiled once per instruction set: define MIXSCORE_ISA"
#endif

// Everything here lives in the per-ISA namespace: these are templates and inline functions,
// and identical names in the generic/avx2/avx512 objects would be merged by the linker into
// one (the first linked: generic) copy, silently running SSE code in the AVX-512 engine.
namespace mixscore {
namespace MIXSCORE_ISA {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX2__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif

// Register block: MR rows x NR columns (two vectors per row: 16 accumulators with AVX-512).
template <typename T>
struct Blocking {
  static constexpr int MR = kVectorBytes == 64 ? 8 : 4;
  static constexpr int NR = 2 * kVectorBytes / int(sizeof(T));
  static constexpr int64_t KC = 192;  // B slice KC x NR (24 KiB for float, AVX-512) in L1
};

// A accessors: packed row blocks, or rows in place with an index list over k (compaction).
template <typename T>
struct APacked {
  const T* p;  // this row block: p[k * MR + r]
  static constexpr int MR = Blocking<T>::MR;
  const T* at(int64_t k) const { return p + k * MR; }
  T get(const T* ak, int r) const { return ak[r]; }
};
template <typename T>
struct AIndexed {
  const T* p;  // row 0 of this row block; row r at p + r * lda
  int64_t lda;
  const int32_t* idx;  // column of A used for the k-th product
  const T* at(int64_t k) const { return p + idx[k]; }
  T get(const T* ak, int r) const { return ak[r * lda]; }
};

// Portable micro-kernel: an MR x NR block over k in [0, kc), continuing C when `acc`.
template <typename T, typename A>
inline void kernel_portable(const A& a, int64_t k0, int64_t kc, const T* __restrict b, T* C,
                            int64_t ldc, bool acc) {
  constexpr int MR = Blocking<T>::MR, NR = Blocking<T>::NR;
  T c[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) c[r][j] = acc ? C[r * ldc + j] : T(0);
  for (int64_t k = 0; k < kc; ++k) {
    const T* ak = a.at(k0 + k);
    const T* bk = b + k * NR;
    for (int r = 0; r < MR; ++r) {
      const T ar = a.get(ak, r);
#pragma omp simd
      for (int j = 0; j < NR; ++j) c[r][j] += ar * bk[j];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) C[r * ldc + j] = c[r][j];
}

#if defined(__AVX512F__)
// 8 x 32 floats in 16 zmm accumulators; per k two loads of B and eight broadcasts of A.
template <typename A>
inline void kernel_avx512(const A& a, int64_t k0, int64_t kc, const float* __restrict b,
                          float* C, int64_t ldc, bool acc) {
  __m512 c0[8], c1[8];
  for (int r = 0; r < 8; ++r) {
    c0[r] = acc ? _mm512_loadu_ps(C + r * ldc) : _mm512_setzero_ps();
    c1[r] = acc ? _mm512_loadu_ps(C + r * ldc + 16) : _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < kc; ++k) {
    const float* ak = a.at(k0 + k);
    const __m512 b0 = _mm512_loadu_ps(b + k * 32), b1 = _mm512_loadu_ps(b + k * 32 + 16);
    _mm_prefetch(reinterpret_cast<const char*>(b + k * 32 + 256), _MM_HINT_T0);
#pragma GCC unroll 8
    for (int r = 0; r < 8; ++r) {
      const __m512 ar = _mm512_set1_ps(a.get(ak, r));
      c0[r] = _mm512_fmadd_ps(ar, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(ar, b1, c1[r]);
    }
  }
  for (int r = 0; r < 8; ++r) {
    _mm512_storeu_ps(C + r * ldc, c0[r]);
    _mm512_storeu_ps(C + r * ldc + 16, c1[r]);
  }
}
#endif

template <typename T, typename A>
inline void kernel(const A& a, int64_t k0, int64_t kc, const T* b, T* C, int64_t ldc, bool acc) {
#if defined(__AVX512F__)
  if constexpr (std::is_same<T, float>::value) {
    kernel_avx512(a, k0, kc, b, C, ldc, acc);
    return;
  }
#endif
  kernel_portable<T>(a, k0, kc, b, C, ldc, acc);
}

// C (row blocks `blocks[0..nb)`, npanel * NR columns, ldc) = A (K) x Bp. make_a(blk) returns
// the accessor of row block blk; C rows of block blk start at C + blk * MR * ldc.
// With acc64 (same layout as C, in double): the precise product. Each KC slice is one chain in
// T started from +0, the slices are summed in float64 (acc64) in increasing k and the sum is
// rounded to T once: the accumulated rounding error is that of a KC-term chain, not a K-term
// one (bound.hpp), for 1 / KC more work.
template <typename T, typename MakeA>
void gemm_packed(const int32_t* blocks, int nb, int64_t npanel, int64_t K, MakeA make_a,
                 const T* Bp, T* C, int64_t ldc, double* acc64 = nullptr) {
  constexpr int MR = Blocking<T>::MR, NR = Blocking<T>::NR;
  constexpr int64_t KC = Blocking<T>::KC;
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    const int64_t kc = std::min(KC, K - k0);
    for (int64_t p = 0; p < npanel; ++p) {
      const T* b = Bp + (p * K + k0) * NR;
      for (int ib = 0; ib < nb; ++ib) {
        const int64_t off = int64_t(blocks[ib]) * MR * ldc + p * NR;
        kernel<T>(make_a(blocks[ib]), k0, kc, b, C + off, ldc, !acc64 && k0 > 0);
        if (acc64)
          for (int r = 0; r < MR; ++r) {
            const T* c = C + off + r * ldc;
            double* a = acc64 + off + r * ldc;
            if (k0 == 0) {
#pragma omp simd
              for (int j = 0; j < NR; ++j) a[j] = double(c[j]);
            } else {
#pragma omp simd
              for (int j = 0; j < NR; ++j) a[j] += double(c[j]);
            }
          }
      }
    }
  }
  if (acc64)
    for (int ib = 0; ib < nb; ++ib)
      for (int r = 0; r < MR; ++r) {
        const int64_t off = (int64_t(blocks[ib]) * MR + r) * ldc;
#pragma omp simd
        for (int64_t j = 0; j < npanel * NR; ++j) C[off + j] = T(acc64[off + j]);
      }
}

// Ap[blk][k][MR] from rows [0, nblk * MR) of a row-major matrix (ld).
template <typename T>
void pack_a(int64_t nblk, int64_t K, const T* src, int64_t ld, T* Ap) {
  constexpr int MR = Blocking<T>::MR;
  for (int64_t blk = 0; blk < nblk; ++blk)
    for (int64_t k = 0; k < K; ++k)
      for (int r = 0; r < MR; ++r) Ap[(blk * K + k) * MR + r] = src[(blk * MR + r) * ld + k];
}

#if defined(__AVX512F__)
// In-register transpose of a 16 x 16 float block (r[i][j] -> r[j][i]).
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int g = 0; g < 4; ++g) {
    r[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
    t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
    t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD);
    r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xDD);
  }
}
#endif

// Bp[p][k][NR] = src[p * NR + j][k] for rows j < nrows (ld), zero beyond: the training tile
// transposed into panels for the logit GEMM.
template <typename T>
void pack_b_transposed(int64_t nrows, int64_t K, const T* src, int64_t ld, T* Bp) {
  constexpr int NR = Blocking<T>::NR;
  const int64_t npanel = (nrows + NR - 1) / NR;
  int64_t p0 = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same<T, float>::value) {
    // whole 16-row halves: 16 x 16 in-register transposes, scalar k tail
    const int64_t kfull = K - K % 16;
    for (int64_t h = 0; h < nrows / 16; ++h) {
      const float* s = src + h * 16 * ld;
      float* d = Bp + (h / 2) * K * NR + (h % 2) * 16;
      for (int64_t k0 = 0; k0 < kfull; k0 += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(s + i * ld + k0);
        transpose16(r);
        for (int i = 0; i < 16; ++i) _mm512_storeu_ps(d + (k0 + i) * NR, r[i]);
      }
      for (int64_t k = kfull; k < K; ++k)
        for (int i = 0; i < 16; ++i) d[k * NR + i] = s[i * ld + k];
    }
    const int64_t rows_done = nrows - nrows % 16;
    if (rows_done == nrows) return;
    p0 = rows_done / NR;  // the panel holding the remaining rows (possibly half done)
    const int64_t j0 = rows_done % NR;
    float* d = Bp + p0 * K * NR;
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = j0; j < NR; ++j) {
        const int64_t row = p0 * NR + j;
        d[k * NR + j] = row < nrows ? src[row * ld + k] : 0.0f;
      }
    return;
  }
#endif
  for (int64_t p = p0; p < npanel; ++p) {
    T* d = Bp + p * K * NR;
    const int64_t nj = std::min<int64_t>(NR, nrows - p * NR);
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t j = 0; j < nj; ++j) d[k * NR + j] = src[(p * NR + j) * ld + k];
      for (int64_t j = nj; j < NR; ++j) d[k * NR + j] = T(0);
    }
  }
}

// Bp[p][kk][NR] = T(src[idx[kk]][p * NR + j] - shift[p * NR + j]) (zero for columns >= ncols):
// selected training rows, centred with the prepared set's rounding (prepared.hpp) and cut into
// column panels, for the weighted-sum GEMM.
template <typename T>
void pack_b_rows(const int32_t* idx, int64_t nk, int64_t ncols, const T* src, int64_t ld,
                 const double* shift, T* Bp) {
  constexpr int NR = Blocking<T>::NR;
  const int64_t npanel = (ncols + NR - 1) / NR;
  for (int64_t p = 0; p < npanel; ++p) {
    const int64_t c0 = p * NR, nj = std::min<int64_t>(NR, ncols - c0);
    const double* m = shift + c0;
    T* d = Bp + p * nk * NR;
    for (int64_t kk = 0; kk < nk; ++kk) {
      const T* s = src + int64_t(idx[kk]) * ld + c0;
      T* dk = d + kk * NR;
      if (nj == NR) {
#pragma omp simd
        for (int j = 0; j < NR; ++j) dk[j] = T(double(s[j]) - m[j]);
      } else {
        for (int64_t j = 0; j < nj; ++j) dk[j] = T(double(s[j]) - m[j]);
        for (int64_t j = nj; j < NR; ++j) dk[j] = T(0);
      }
    }
  }
}

// The prepared training set's packing (mixscore/prepared.hpp): each tile of `tile` rows of
// src, centred (T(src - shift), the prepared set's rounding) into a scratch tile, then
// transposed into panels once; tile t at out + t * tile * K. With norm2, also the float64
// squared norms of the centred rounded rows (one pass over src for both).
template <typename T>
void pack_tiles(const T* src, const double* shift, int64_t nrows, int64_t K, int64_t tile,
                T* out, int num_threads, double* norm2 = nullptr) {
  constexpr int NR = Blocking<T>::NR;  // (tile is a multiple of NR)
  const int64_t ntiles = (nrows + tile - 1) / tile;
#pragma omp parallel num_threads(num_threads)
  {
    std::vector<T> centred(NR * K);  // one panel's rows: stays in L2
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < ntiles; ++t) {
      const int64_t n_tile = std::min(tile, nrows - t * tile);
      for (int64_t p0 = 0; p0 < n_tile; p0 += NR) {
        const int64_t rows = std::min<int64_t>(NR, n_tile - p0), n0 = t * tile + p0;
        for (int64_t r = 0; r < rows; ++r) {
          const T* sr = src + (n0 + r) * K;
          T* cr = centred.data() + r * K;
#pragma omp simd
          for (int64_t k = 0; k < K; ++k) cr[k] = T(double(sr[k]) - shift[k]);
          if (norm2) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; ++k) acc += double(cr[k]) * double(cr[k]);
            norm2[n0 + r] = acc;
          }
        }
        pack_b_transposed<T>(rows, K, centred.data(), K, out + t * tile * K + p0 * K);
      }
    }
  }
}

}  // namespace MIXSCORE_ISA
}  // namespace mixscore
