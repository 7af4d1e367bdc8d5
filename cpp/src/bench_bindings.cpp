// pybind11 module mixscore._bench: benchmark-only helpers that measure the machine's limits for
// bench/compare.py (the float32 FMA peak and the throughput of the engine's own exp) and the
// GEMM expansion with its bound for tests, kept out of the public extension. Compiled per instruction set like the engine (limits_variant.cpp);
// `isa` picks the variant to measure (the engine's: pass mixscore._core.isa()).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "cpu_features.hpp"
#include "mixscore/limits.hpp"

namespace py = pybind11;

using namespace mixscore;

namespace {

const LimitsVariant& limits_for(const std::string& isa) {
  static const LimitsVariant* const table[3] = {&generic::kLimits, &avx2::kLimits,
                                                &avx512::kLimits};
  const int i = isa_by_name(isa.c_str());
  if (i < 0)
    throw py::value_error("isa must be 'auto' or one of 'generic', 'avx2', 'avx512' that this "
                          "CPU supports, got '" + isa + "'");
  return *table[i];
}

void check_run(int threads, double seconds) {
  if (threads < 0 || threads > 4096)
    throw py::value_error("threads must be in [0, 4096] (0: all OpenMP threads), got " +
                          std::to_string(threads));
  if (!(seconds > 0 && seconds <= 60))
    throw py::value_error("seconds must be in (0, 60], got " + std::to_string(seconds));
}

}  // namespace

PYBIND11_MODULE(_bench, m) {
  m.doc() = "mixscore benchmark helpers (machine limits; not part of the public API)";
  m.def("fma_peak_gflops", [](int threads, double seconds, const std::string& isa) {
    check_run(threads, seconds);
    const LimitsVariant& v = limits_for(isa);
    py::gil_scoped_release nogil;
    return v.fma_peak_gflops(threads, seconds);
  }, py::arg("threads") = 0, py::arg("seconds") = 0.2, py::arg("isa") = "auto",
     "float32 FMA throughput in GFLOP/s (2 flops per lane) with register-resident chains on\n"
     "`threads` threads (0: all), run for about `seconds`, with the instruction set `isa`.");
  m.def("exp_throughput", [](const std::string& dtype, int threads, double seconds,
                             const std::string& isa) {
    if (dtype != "float32" && dtype != "float64")
      throw py::value_error("dtype must be 'float32' or 'float64', got '" + dtype + "'");
    check_run(threads, seconds);
    const LimitsVariant& v = limits_for(isa);
    py::gil_scoped_release nogil;
    return v.exp_throughput(dtype == "float32", threads, seconds);
  }, py::arg("dtype") = "float32", py::arg("threads") = 0, py::arg("seconds") = 0.2,
     py::arg("isa") = "auto",
     "Exps per second of the engine's own exp (float32 or float64) on an L1-resident buffer of\n"
     "gaps in [-30, 0], vectorized as in the engine, on `threads` threads (0: all), run for\n"
     "about `seconds`, with the instruction set `isa`.");
  using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
  m.def("expansion", [](F32 X, F32 x, double alpha, bool precise, const std::string& isa) {
    if (X.ndim() != 2 || x.ndim() != 2 || X.shape(1) != x.shape(1) || X.shape(0) < 1)
      throw py::value_error("X (N, D) and x (M, D) must be 2-D with the same D and N >= 1");
    const int64_t N = X.shape(0), M = x.shape(0), D = X.shape(1);
    py::array_t<double> A({M, N}), E({M, N});
    const LimitsVariant& v = limits_for(isa);
    {
      py::gil_scoped_release nogil;
      v.expansion(X.data(), N, x.data(), M, D, alpha, precise, A.mutable_data(),
                  E.mutable_data());
    }
    return py::make_tuple(A, E);
  }, py::arg("X"), py::arg("x"), py::arg("alpha"), py::arg("precise"), py::arg("isa") = "auto",
     "For tests: (A, E), the engine's float32 GEMM expansion of |x_i - alpha X_n|^2 (M x N,\n"
     "plain or precise product) and its rigorous error bound (bound.hpp), entry by entry.");
}
