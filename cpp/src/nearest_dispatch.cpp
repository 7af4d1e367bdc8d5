// Runtime choice of the nearest-neighbour variant: the one the score engine uses
// (selected_isa(), dispatch.cpp), so mixscore._core.set_isa switches both.
#include <cstring>

#include "mixscore/nearest.hpp"

namespace mixscore {

#define MIXSCORE_DECLARE_NEAREST_VARIANT(isa)                                                  \
  namespace isa {                                                                              \
  template <typename T>                                                                        \
  bool nearest_search(const TrainSet<T>&, const T*, int64_t, int64_t, double*, int64_t*,   \
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
bool nearest_search(const TrainSet<T>& tr, const T* x, int64_t M, int64_t k, double* dist,
                    int64_t* idx, const NearestOptions& opt, const StopFn& stop,
                    NearestCounters* counters) {
  MIXSCORE_NEAREST_DISPATCH(nearest_search<T>(tr, x, M, k, dist, idx, opt, stop, counters));
}

template bool nearest_search<float>(const TrainSet<float>&, const float*, int64_t, int64_t,
                                    double*, int64_t*, const NearestOptions&, const StopFn&,
                                    NearestCounters*);
template bool nearest_search<double>(const TrainSet<double>&, const double*, int64_t, int64_t,
                                     double*, int64_t*, const NearestOptions&, const StopFn&,
                                     NearestCounters*);

}  // namespace mixscore
