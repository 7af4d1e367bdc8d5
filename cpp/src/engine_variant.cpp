// Compiled once per instruction set by CMakeLists.txt with -DMIXSCORE_ISA=<name>.
#include "engine_impl.hpp"
#include "mixscore/packgemm.hpp"

namespace mixscore {
namespace MIXSCORE_ISA {
template bool run<float>(const TrainSet<float>&, const Queries<float>&, const Outputs<float>&,
                         const EngineOptions&, const StopFn&);
template bool run<double>(const TrainSet<double>&, const Queries<double>&,
                          const Outputs<double>&, const EngineOptions&, const StopFn&);
template <typename T>
void pack_train(const T* Xc, int64_t N, int64_t D, T* out, int num_threads) {
  pack_tiles<T>(Xc, N, D, kTrainTile, out, num_threads);
}
template void pack_train<float>(const float*, int64_t, int64_t, float*, int);
template void pack_train<double>(const double*, int64_t, int64_t, double*, int);
}  // namespace MIXSCORE_ISA
}  // namespace mixscore
