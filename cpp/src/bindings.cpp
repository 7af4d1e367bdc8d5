// pybind11 bindings: module mixscore._core. Inputs are validated and prepared in Python
// (python/mixscore/backends/cpu.py); here arrays are checked for dtype/layout only.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <optional>
#include <set>
#include <string>

#include "mixscore/engine.hpp"
#include "mixscore/fastexp.hpp"
#include "interruptible.hpp"

namespace py = pybind11;
using namespace mixscore;

void register_nearest(py::module_& m);  // nearest_bindings.cpp

template <typename T>
using carray = py::array_t<T, py::array::c_style>;

namespace {

template <typename T>
T* maybe_alloc(py::dict& result, const std::set<std::string>& want, const char* name,
               std::vector<py::ssize_t> shape) {
  if (!want.count(name)) return nullptr;
  py::array_t<T> a(shape);
  result[name] = a;
  return a.mutable_data();
}

void check_len(const py::array& a, py::ssize_t n, const char* what) {
  if (a.ndim() != 1 || a.shape(0) != n)
    throw std::invalid_argument(std::string(what) + ": expected a 1-d array of length " +
                                std::to_string(n));
}

template <typename T>
py::dict stats(carray<T> X, carray<T> Xc, std::optional<carray<double>> XT,
               carray<double> norm2c, carray<double> normc, std::optional<carray<double>> logw,
               carray<double> mu, carray<T> x, carray<double> alpha, carray<double> sigma2,
               const std::set<std::string>& want, const EngineOptions& opt) {
  if (X.ndim() != 2 || Xc.ndim() != 2 || x.ndim() != 2)
    throw std::invalid_argument("train, centred train and queries must be 2-d");
  const py::ssize_t N = X.shape(0), D = X.shape(1), M = x.shape(0);
  if (Xc.shape(0) != N || Xc.shape(1) != D)
    throw std::invalid_argument("centred train must have the shape of train");
  if (x.shape(1) != D)
    throw std::invalid_argument("queries have " + std::to_string(x.shape(1)) +
                                " columns, train has " + std::to_string(D));
  if (N < 1) throw std::invalid_argument("train is empty");
  check_len(norm2c, N, "norm2c");
  check_len(normc, N, "normc");
  check_len(mu, D, "mu");
  check_len(alpha, M, "alpha");
  check_len(sigma2, M, "sigma2");
  if (logw) check_len(*logw, N, "logw");
  if (XT && (XT->ndim() != 2 || XT->shape(0) != D || XT->shape(1) != N))
    throw std::invalid_argument("XT must be D x N");
  if (!XT && D < kDirectMaxD)
    throw std::invalid_argument("XT is required when D < DIRECT_MAX_D");

  TrainSet<T> tr;
  tr.X = X.data();
  tr.Xc = Xc.data();
  tr.XT = XT ? XT->data() : nullptr;
  tr.norm2c = norm2c.data();
  tr.normc = normc.data();
  tr.logw = logw ? logw->data() : nullptr;
  tr.mu = mu.data();
  tr.N = N;
  tr.D = D;
  Queries<T> qs;
  qs.x = x.data();
  qs.alpha = alpha.data();
  qs.sigma2 = sigma2.data();
  qs.M = M;

  py::dict result;
  Outputs<T> out;
  out.denoised = maybe_alloc<T>(result, want, "denoised", {M, D});
  out.score = maybe_alloc<T>(result, want, "score", {M, D});
  out.eps = maybe_alloc<T>(result, want, "eps", {M, D});
  out.logpdf = maybe_alloc<double>(result, want, "logpdf", {M});
  out.tau2 = maybe_alloc<double>(result, want, "tau2", {M});
  out.max_weight = maybe_alloc<double>(result, want, "max_weight", {M});
  out.argmax = maybe_alloc<int64_t>(result, want, "argmax", {M});
  out.n_eff = maybe_alloc<double>(result, want, "n_eff", {M});
  if (M > 0)
    run_interruptible([&](const StopFn& poll) { return run_engine<T>(tr, qs, out, opt, poll); });
  return result;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "mixscore C++ engine (streaming exact empirical-score statistics)";

  py::class_<EngineOptions>(m, "EngineOptions")
      .def(py::init<>())
      .def_readwrite("refine_tol", &EngineOptions::refine_tol)
      .def_readwrite("approx_cap", &EngineOptions::approx_cap)
      .def_readwrite("dominant_gap", &EngineOptions::dominant_gap)
      .def_readwrite("refine_budget", &EngineOptions::refine_budget)
      .def_readwrite("cutoff", &EngineOptions::cutoff)
      .def_readwrite("num_threads", &EngineOptions::num_threads);

  m.def("stats_f32", &stats<float>, py::arg("X"), py::arg("Xc"), py::arg("XT"),
        py::arg("norm2c"), py::arg("normc"), py::arg("logw"), py::arg("mu"), py::arg("x"),
        py::arg("alpha"), py::arg("sigma2"), py::arg("want"), py::arg("options"));
  m.def("stats_f64", &stats<double>, py::arg("X"), py::arg("Xc"), py::arg("XT"),
        py::arg("norm2c"), py::arg("normc"), py::arg("logw"), py::arg("mu"), py::arg("x"),
        py::arg("alpha"), py::arg("sigma2"), py::arg("want"), py::arg("options"));
  m.attr("DIRECT_MAX_D") = kDirectMaxD;
  register_nearest(m);
  m.def("isa", &selected_isa, "Instruction set of the engine variant in use.");
  m.def("set_isa", [](const std::string& name) { return set_isa(name.c_str()); },
        "Select 'avx512', 'avx2', 'generic' or 'auto'; False if this CPU lacks it.");
  m.def("max_threads", []() { return omp_get_max_threads(); });
  m.def("exp_nonpositive", [](carray<double> x) {
    py::array_t<double> y(x.size());
    auto* out = y.mutable_data();
    for (py::ssize_t k = 0; k < x.size(); ++k) out[k] = exp_nonpositive(x.data()[k]);
    return y;
  }, "The engine's exp on [-700, 0] (exposed for accuracy tests).");
}
