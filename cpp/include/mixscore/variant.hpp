// One dispatch table per instruction set: cpp/src/variant.cpp, compiled once per instruction
// set with -DMIXSCORE_ISA=<name>, fills a Variant with that build's kernels; dispatch.cpp
// selects one (the best this CPU runs, or _core.set_isa) and every entry point calls through it.
#pragma once
#include <cstdint>

#include "mixscore/draws.hpp"
#include "mixscore/engine.hpp"
#include "mixscore/nearest.hpp"

namespace mixscore {

template <typename T>
struct Kernels {
  bool (*stats)(const TrainSet<T>&, const Queries<T>&, const Outputs<T>&, const EngineOptions&,
                const StopFn&);
  bool (*nearest)(const TrainSet<T>&, const T*, int64_t, int64_t, double*, int64_t*,
                  const NearestOptions&, const StopFn&, NearestCounters*);
  void (*pack)(const T*, const double*, int64_t, int64_t, T*, int, double*);  // prepared.hpp
  bool (*draws)(const TrainSet<T>&, const Queries<T>&, const DrawSpec&, int64_t*,
                const EngineOptions&, const StopFn&);
};

struct Variant {
  const char* name;
  Kernels<float> f32;
  Kernels<double> f64;
  void (*fill_normals)(uint64_t, int64_t, int64_t, uint32_t, int64_t, double*);

  template <typename T>
  const Kernels<T>& kernels() const {
    if constexpr (sizeof(T) == 4) return f32;
    else return f64;
  }
};

// The variants, in increasing order of the instruction sets they need.
namespace generic { extern const Variant kVariant; }
namespace avx2 { extern const Variant kVariant; }
namespace avx512 { extern const Variant kVariant; }

// The variant in use and its position in (generic, avx2, avx512).
const Variant& variant();
int isa_index();

}  // namespace mixscore
