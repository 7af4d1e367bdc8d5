// The exact routines of mixscore/exact.hpp, compiled once per instruction set with
// -ffp-contract=off (CMakeLists.txt): the one rounding rule, identical in every variant.
#define MIXSCORE_EXACT_DEFINITIONS
#include "mixscore/exact.hpp"

namespace mixscore {
namespace MIXSCORE_ISA {

template double exact_lam<float>(const float*, const float*, double, int64_t, double);
template double exact_lam<double>(const double*, const double*, double, int64_t, double);
#define MIXSCORE_COLUMNS(DC)                                                                  \
  template double exact_lam_columns<DC, false>(const double*, double, const double*, int64_t, \
                                               int64_t, int64_t, double, const double*,      \
                                               double*, const double*, double*);             \
  template double exact_lam_columns<DC, true>(const double*, double, const double*, int64_t,       \
                                        int64_t, int64_t, double, const double*, double*,    \
                                        const double*, double*);
MIXSCORE_COLUMNS(0)
MIXSCORE_COLUMNS(1)
MIXSCORE_COLUMNS(2)
MIXSCORE_COLUMNS(3)

}  // namespace MIXSCORE_ISA
}  // namespace mixscore
