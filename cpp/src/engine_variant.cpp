// Compiled once per instruction set by CMakeLists.txt with -DMIXSCORE_ISA=<name>.
#include "engine_impl.hpp"

namespace mixscore {
namespace MIXSCORE_ISA {
template bool run<float>(const TrainSet<float>&, const Queries<float>&, const Outputs<float>&,
                         const EngineOptions&, const StopFn&);
template bool run<double>(const TrainSet<double>&, const Queries<double>&,
                          const Outputs<double>&, const EngineOptions&, const StopFn&);
}  // namespace MIXSCORE_ISA
}  // namespace mixscore
