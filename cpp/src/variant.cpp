// One instruction-set variant (compiled once per ISA by CMakeLists.txt with
// -DMIXSCORE_ISA=<name>): the engine, the nearest search, the posterior draws and the packing
// of the prepared training set, collected in this variant's dispatch table (mixscore/variant.hpp).
#include "mixscore/variant.hpp"
#include "draws.hpp"
#include "posterior.hpp"
#include "topk.hpp"

#define MIXSCORE_STR2(x) #x
#define MIXSCORE_STR(x) MIXSCORE_STR2(x)

namespace mixscore {
namespace MIXSCORE_ISA {

void fill_normals(uint64_t, int64_t, int64_t, uint32_t, int64_t, double*);  // noise_variant.cpp

template <typename T>
void pack_train(const T* X, const double* mu, int64_t N, int64_t D, T* out, int num_threads,
                double* norm2) {
  pack_tiles<T>(X, mu, N, D, kTrainTile, out, num_threads, norm2);
}

extern const Variant kVariant = {
    MIXSCORE_STR(MIXSCORE_ISA),
    {&run<float>, &nearest_search<float>, &pack_train<float>, &posterior_draws<float>},
    {&run<double>, &nearest_search<double>, &pack_train<double>, &posterior_draws<double>},
    &fill_normals,
};

}  // namespace MIXSCORE_ISA
}  // namespace mixscore
