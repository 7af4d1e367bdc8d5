// Runtime choice of the engine variant: the best instruction set this CPU supports, so one
// portable build runs everywhere (and -DMIXSCORE_NATIVE=ON is an explicit opt-in).
#include <cstring>

#include "mixscore/engine.hpp"
#include "mixscore/limits.hpp"
#include "mixscore/prepared.hpp"

namespace mixscore {

#define MIXSCORE_DECLARE_VARIANT(isa)                                                      \
  namespace isa {                                                                          \
  template <typename T>                                                                    \
  bool run(const TrainSet<T>&, const Queries<T>&, const Outputs<T>&, const EngineOptions&, \
           const StopFn&);                                                                 \
  }
#define MIXSCORE_DECLARE_NOISE(isa) \
  namespace isa {                   \
  void fill_normals(uint64_t, int64_t, int64_t, uint32_t, int64_t, double*); \
  template <typename T> void pack_train(const T*, int64_t, int64_t, T*, int); \
  }
MIXSCORE_DECLARE_NOISE(generic)
MIXSCORE_DECLARE_NOISE(avx2)
MIXSCORE_DECLARE_NOISE(avx512)
MIXSCORE_DECLARE_VARIANT(generic)
MIXSCORE_DECLARE_VARIANT(avx2)
MIXSCORE_DECLARE_VARIANT(avx512)

namespace {
enum class Isa { generic, avx2, avx512 };

Isa best_supported() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("bmi2"))
    return Isa::avx2;
  return Isa::generic;
}

Isa& current() {
  static Isa isa = best_supported();
  return isa;
}
}  // namespace

const char* selected_isa() {
  switch (current()) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

bool set_isa(const char* name) {
  Isa best = best_supported();
  Isa want;
  if (!std::strcmp(name, "auto")) want = best;
  else if (!std::strcmp(name, "avx512")) want = Isa::avx512;
  else if (!std::strcmp(name, "avx2")) want = Isa::avx2;
  else if (!std::strcmp(name, "generic")) want = Isa::generic;
  else return false;
  if (int(want) > int(best)) return false;  // not supported by this CPU
  current() = want;
  return true;
}

template <typename T>
bool run_engine(const TrainSet<T>& tr, const Queries<T>& q, const Outputs<T>& out,
                const EngineOptions& opt, const StopFn& stop) {
  switch (current()) {
    case Isa::avx512: return avx512::run(tr, q, out, opt, stop);
    case Isa::avx2: return avx2::run(tr, q, out, opt, stop);
    default: return generic::run(tr, q, out, opt, stop);
  }
}

int isa_index() { return int(current()); }

template <typename T>
void pack_train_tiles(const T* Xc, int64_t N, int64_t D, T* out, int num_threads) {
  switch (current()) {
    case Isa::avx512: return avx512::pack_train(Xc, N, D, out, num_threads);
    case Isa::avx2: return avx2::pack_train(Xc, N, D, out, num_threads);
    default: return generic::pack_train(Xc, N, D, out, num_threads);
  }
}
template void pack_train_tiles<float>(const float*, int64_t, int64_t, float*, int);
template void pack_train_tiles<double>(const double*, int64_t, int64_t, double*, int);

void fill_normals(uint64_t seed, int64_t first_sample, int64_t n, uint32_t step, int64_t D,
                  double* z) {
  switch (current()) {
    case Isa::avx512: return avx512::fill_normals(seed, first_sample, n, step, D, z);
    case Isa::avx2: return avx2::fill_normals(seed, first_sample, n, step, D, z);
    default: return generic::fill_normals(seed, first_sample, n, step, D, z);
  }
}

template bool run_engine<float>(const TrainSet<float>&, const Queries<float>&,
                                const Outputs<float>&, const EngineOptions&, const StopFn&);
template bool run_engine<double>(const TrainSet<double>&, const Queries<double>&,
                                 const Outputs<double>&, const EngineOptions&, const StopFn&);

}  // namespace mixscore

// Benchmark helpers (limits_variant.cpp), dispatched like the engine so they measure the
// instruction set it runs.
namespace mixscore {

#define MIXSCORE_DECLARE_LIMITS(isa)                     \
  namespace isa {                                        \
  double fma_peak_gflops(int, double);                   \
  double exp_throughput(bool, int, double);              \
  }
MIXSCORE_DECLARE_LIMITS(generic)
MIXSCORE_DECLARE_LIMITS(avx2)
MIXSCORE_DECLARE_LIMITS(avx512)

double fma_peak_gflops(int threads, double seconds) {
  switch (current()) {
    case Isa::avx512: return avx512::fma_peak_gflops(threads, seconds);
    case Isa::avx2: return avx2::fma_peak_gflops(threads, seconds);
    default: return generic::fma_peak_gflops(threads, seconds);
  }
}

double exp_throughput(bool single, int threads, double seconds) {
  switch (current()) {
    case Isa::avx512: return avx512::exp_throughput(single, threads, seconds);
    case Isa::avx2: return avx2::exp_throughput(single, threads, seconds);
    default: return generic::exp_throughput(single, threads, seconds);
  }
}

}  // namespace mixscore
