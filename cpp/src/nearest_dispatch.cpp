// Runtime choice of the nearest-neighbour variant: the one the score engine uses
// (selected_isa(), dispatch.cpp), so mixscore._core.set_isa switches both.
#include <cstring>

#include "mixscore/nearest.hpp"

namespace mixscore {

#define MIXSCORE_DECLARE_NEAREST_VARIANT(isa)                                                  \
  namespace isa {                                                                              \
  template <typename T>                                                                        \
  void nearest_pack(const T*, int64_t, int64_t, const double*, T*, double*, double*, int);     \
  template <typename T>                                                                        \
  bool nearest_search(const NearestTrain<T>&, const T*, int64_t, int64_t, double*, int64_t*,   \
                      const NearestOptions&, const StopFn&, NearestCounters*);                 \
  }
MIXSCORE_DECLARE_NEAREST_VARIANT(generic)
MIXSCORE_DECLARE_NEAREST_VARIANT(avx2)
MIXSCORE_DECLARE_NEAREST_VARIANT(avx512)

#define MIXSCORE_NEAREST_DISPATCH(call)                              \
  do {                                                               \
    const char* isa = selected_isa();                                \
    if (!std::strcmp(isa, "avx512")) return avx512::call;            \
    if (!std::strcmp(isa, "avx2")) return avx2::call;                \
    return generic::call;                                            \
  } while (0)

template <typename T>
void nearest_pack(const T* X, int64_t N, int64_t D, const double* mu, T* packed, double* norm2,
                  double* norm, int num_threads) {
  MIXSCORE_NEAREST_DISPATCH(nearest_pack<T>(X, N, D, mu, packed, norm2, norm, num_threads));
}

template <typename T>
bool nearest_search(const NearestTrain<T>& tr, const T* x, int64_t M, int64_t k, double* dist,
                    int64_t* idx, const NearestOptions& opt, const StopFn& stop,
                    NearestCounters* counters) {
  MIXSCORE_NEAREST_DISPATCH(nearest_search<T>(tr, x, M, k, dist, idx, opt, stop, counters));
}

template void nearest_pack<float>(const float*, int64_t, int64_t, const double*, float*, double*,
                                  double*, int);
template void nearest_pack<double>(const double*, int64_t, int64_t, const double*, double*,
                                   double*, double*, int);
template bool nearest_search<float>(const NearestTrain<float>&, const float*, int64_t, int64_t,
                                    double*, int64_t*, const NearestOptions&, const StopFn&,
                                    NearestCounters*);
template bool nearest_search<double>(const NearestTrain<double>&, const double*, int64_t, int64_t,
                                     double*, int64_t*, const NearestOptions&, const StopFn&,
                                     NearestCounters*);

}  // namespace mixscore
