// Compiled once per instruction set by CMakeLists.txt with -DMIXSCORE_ISA=<name>.
#include "nearest_impl.hpp"

namespace mixscore {
namespace MIXSCORE_ISA {
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
}  // namespace MIXSCORE_ISA
}  // namespace mixscore
