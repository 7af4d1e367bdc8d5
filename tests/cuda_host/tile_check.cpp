// The GEMM tile of the GPU driver (cuda/tile_gemm.cuh) run on the CPU: one CUDA block is 256
// std::threads, __syncthreads a std::barrier, __shared__ arrays static storage (shared by the
// block's threads; blocks run one after another). Every entry of the block's product must
// equal, bit for bit, the FMAs over k in order (the tile's contract: results independent of
// the launch shape), for float and double, both operand layouts, partial tiles and k ranges
// that start inside the operand. Prints "ok" or the first mismatch; exit status 1 on failure.
// Built and run by tests/test_cuda_host.py (g++ -std=c++20 -pthread -ffp-contract=off).
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};
thread_local Dim3 threadIdx;
static std::barrier<>* block_barrier = nullptr;
inline void __syncthreads() { block_barrier->arrive_and_wait(); }
struct float4 {
  float x, y, z, w;
};
struct double2 {
  double x, y;
};
using std::fma;
#define __device__
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#include "tile_gemm.cuh"

using mixscore::cuda::TileShape;

template <typename Acc, bool KContiguous>
struct Load {  // element (r, k) of a rows x K operand, zero outside (the loaders' contract)
  static constexpr bool kKContiguous = KContiguous;
  const std::vector<Acc>* a;
  int64_t rows, K;
  Acc operator()(int64_t r, int64_t k) const {
    return r < rows && k < K ? (*a)[r * K + k] : Acc(0);
  }
};

template <typename Acc, bool KA, bool KB>
bool check(int64_t rows, int64_t cols, int64_t K, int64_t k_begin, int64_t k_end,
           unsigned seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> nd;
  std::vector<Acc> A(rows * K), B(cols * K), out(rows * cols, Acc(-7));
  for (auto& v : A) v = Acc(nd(gen));
  for (auto& v : B) v = Acc(nd(gen));
  const Load<Acc, KA> la{&A, rows, K};
  const Load<Acc, KB> lb{&B, cols, K};
  for (int64_t row0 = 0; row0 < rows; row0 += TileShape::BM)
    for (int64_t col0 = 0; col0 < cols; col0 += TileShape::BN) {
      std::barrier<> bar(TileShape::kThreads);
      block_barrier = &bar;
      std::vector<std::thread> threads;
      for (unsigned t = 0; t < unsigned(TileShape::kThreads); ++t)
        threads.emplace_back([&, t] {
          threadIdx.x = t;
          Acc acc[TileShape::TM][TileShape::TN];
          mixscore::cuda::zero_tile(acc);
          mixscore::cuda::tile_product<Acc>(la, lb, row0, col0, k_begin, k_end, acc);
          mixscore::cuda::store_tile(acc, row0, col0, rows, cols, cols, out.data());
        });
      for (auto& th : threads) th.join();
    }
  const int64_t k_pad = k_begin + (k_end - k_begin + TileShape::BK - 1) / TileShape::BK *
                                      TileShape::BK;  // whole slabs, zero past K
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      Acc want = 0;
      for (int64_t k = k_begin; k < k_pad; ++k) want = fma(la(r, k), lb(c, k), want);
      if (out[r * cols + c] != want) {
        std::printf("mismatch: %s KA=%d KB=%d rows=%ld cols=%ld K=%ld k=[%ld,%ld) at (%ld, %ld):"
                    " %.17g != %.17g\n", sizeof(Acc) == 4 ? "float" : "double", KA, KB,
                    long(rows), long(cols), long(K), long(k_begin), long(k_end), long(r),
                    long(c), double(out[r * cols + c]), double(want));
        return false;
      }
    }
  return true;
}

int main() {
  bool ok = true;
  ok &= check<float, true, true>(200, 300, 37, 0, 37, 1);      // the logits product
  ok &= check<double, true, true>(130, 129, 64, 0, 64, 2);
  ok &= check<float, true, false>(150, 70, 400, 128, 256, 3);  // the weighted sums chunk
  ok &= check<double, true, false>(128, 128, 300, 256, 384, 4);
  ok &= check<float, true, true>(5, 3, 8, 0, 8, 5);            // one slab, tiny tiles
  ok &= check<float, false, true>(129, 257, 20, 0, 20, 6);
  ok &= check<float, true, true>(64, 64, 16, 16, 16, 7);       // an empty k range
  std::puts(ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
