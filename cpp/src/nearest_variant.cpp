// Compiled once per instruction set by CMakeLists.txt with -DMIXSCORE_ISA=<name>.
#include "nearest_impl.hpp"

namespace mixscore {
namespace MIXSCORE_ISA {
template bool nearest_search<float>(const TrainSet<float>&, const float*, int64_t, int64_t,
                                    double*, int64_t*, const NearestOptions&, const StopFn&,
                                    NearestCounters*);
template bool nearest_search<double>(const TrainSet<double>&, const double*, int64_t, int64_t,
                                     double*, int64_t*, const NearestOptions&, const StopFn&,
                                     NearestCounters*);
}  // namespace MIXSCORE_ISA
}  // namespace mixscore
