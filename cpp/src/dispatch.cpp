// Runtime choice of the instruction-set variant (mixscore/variant.hpp): the best one this CPU
// supports, so one portable build runs everywhere (-DMIXSCORE_NATIVE=ON is an explicit opt-in).
// The entry points below call through the selected table.
#include <pthread.h>

#include <omp.h>

#include <atomic>

#include "cpu_features.hpp"
#include "mixscore/draws.hpp"
#include "mixscore/philox.hpp"
#include "mixscore/threads.hpp"
#include "mixscore/prepared.hpp"
#include "mixscore/variant.hpp"

namespace mixscore {

namespace {
std::atomic<bool> forked_child{false};
void on_fork_child() { forked_child.store(true); }
// Registered once when the extension is loaded.
const bool fork_handler_installed = pthread_atfork(nullptr, nullptr, on_fork_child) == 0;

const Variant* const kVariants[3] = {&generic::kVariant, &avx2::kVariant, &avx512::kVariant};
int& current() {
  static int isa = best_isa();
  return isa;
}
}  // namespace

int thread_count(int requested) {
  if (forked_child.load(std::memory_order_relaxed)) return 1;
  return requested > 0 ? requested : omp_get_max_threads();
}

const Variant& variant() { return *kVariants[current()]; }
int isa_index() { return current(); }
const char* selected_isa() { return variant().name; }

bool set_isa(const char* name) {
  const int i = isa_by_name(name);
  if (i < 0) return false;
  current() = i;
  return true;
}

template <typename T>
bool run_engine(const TrainSet<T>& tr, const Queries<T>& q, const Outputs<T>& out,
                const EngineOptions& opt, const StopFn& stop) {
  return variant().kernels<T>().stats(tr, q, out, opt, stop);
}

template <typename T>
bool nearest_search(const TrainSet<T>& tr, const T* x, int64_t M, int64_t k, double* dist,
                    int64_t* idx, const NearestOptions& opt, const StopFn& stop,
                    NearestCounters* counters) {
  return variant().kernels<T>().nearest(tr, x, M, k, dist, idx, opt, stop, counters);
}

template <typename T>
bool posterior_draws(const TrainSet<T>& tr, const Queries<T>& q, const DrawSpec& spec,
                     int64_t* out, const EngineOptions& opt, const StopFn& stop) {
  return variant().kernels<T>().draws(tr, q, spec, out, opt, stop);
}

template <typename T>
void pack_train_tiles(const T* X, const double* mu, int64_t N, int64_t D, T* out,
                      int num_threads, double* norm2) {
  variant().kernels<T>().pack(X, mu, N, D, out, num_threads, norm2);
}

void fill_normals(uint64_t seed, int64_t first_sample, int64_t n, uint32_t step, int64_t D,
                  double* z) {
  variant().fill_normals(seed, first_sample, n, step, D, z);
}

#define MIXSCORE_INSTANTIATE(T)                                                              \
  template bool run_engine<T>(const TrainSet<T>&, const Queries<T>&, const Outputs<T>&,      \
                              const EngineOptions&, const StopFn&);                          \
  template bool nearest_search<T>(const TrainSet<T>&, const T*, int64_t, int64_t, double*,   \
                                  int64_t*, const NearestOptions&, const StopFn&,            \
                                  NearestCounters*);                                         \
  template void pack_train_tiles<T>(const T*, const double*, int64_t, int64_t, T*, int,      \
                                    double*);                                               \
  template bool posterior_draws<T>(const TrainSet<T>&, const Queries<T>&, const DrawSpec&,   \
                                   int64_t*, const EngineOptions&, const StopFn&);
MIXSCORE_INSTANTIATE(float)
MIXSCORE_INSTANTIATE(double)

}  // namespace mixscore
