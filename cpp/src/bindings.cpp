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
#include "mixscore/limits.hpp"
#include "mixscore/philox.hpp"
#include "mixscore/sampler.hpp"
#include "direct_layout.hpp"
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

// The training set as prepared by python/mixscore/backends/cpu.py (CpuBackend.prepared).
// Holds references to the arrays, so they outlive every call that reads them, and for small D
// the direct path's tiled layout, built here once.
template <typename T>
struct TrainArrays {
  carray<T> X, Xc;
  carray<double> norm2c, normc;
  std::optional<carray<double>> logw;
  carray<double> mu;
  std::optional<DirectLayout> direct;

  TrainArrays(carray<T> X_, carray<T> Xc_, carray<double> norm2c_, carray<double> normc_,
              std::optional<carray<double>> logw_, carray<double> mu_)
      : X(X_), Xc(Xc_), norm2c(norm2c_), normc(normc_), logw(logw_), mu(mu_) {
    const TrainSet<T> tr = view();  // validates
    if (tr.D < kDirectMaxD) {
      py::gil_scoped_release release;
      direct.emplace(tr.X, tr.N, tr.D, tr.logw);
    }
  }

  TrainSet<T> view() const {
    if (X.ndim() != 2 || Xc.ndim() != 2)
      throw std::invalid_argument("train and centred train must be 2-d");
    const py::ssize_t N = X.shape(0), D = X.shape(1);
    if (N < 1) throw std::invalid_argument("train is empty");
    if (Xc.shape(0) != N || Xc.shape(1) != D)
      throw std::invalid_argument("centred train must have the shape of train");
    check_len(norm2c, N, "norm2c");
    check_len(normc, N, "normc");
    check_len(mu, D, "mu");
    if (logw) check_len(*logw, N, "logw");
    TrainSet<T> tr;
    tr.X = X.data();
    tr.Xc = Xc.data();
    tr.norm2c = norm2c.data();
    tr.normc = normc.data();
    tr.logw = logw ? logw->data() : nullptr;
    tr.mu = mu.data();
    tr.N = N;
    tr.D = D;
    if (direct) {
      tr.XT = direct->XT.data();
      tr.order = direct->order.data();
      tr.logw_tiled = logw ? direct->logw.data() : nullptr;
      tr.box = direct->box.data();
    }
    return tr;
  }
};

template <typename T>
void check_queries(const carray<T>& x, int64_t D, const char* what) {
  if (x.ndim() != 2 || x.shape(1) != D)
    throw std::invalid_argument(std::string(what) + ": expected a 2-d array with " +
                                std::to_string(D) + " columns");
}

template <typename T>
py::dict stats(const TrainArrays<T>& train, carray<T> x, carray<double> alpha,
               carray<double> sigma2, const std::set<std::string>& want,
               const EngineOptions& opt) {
  const TrainSet<T> tr = train.view();
  check_queries(x, tr.D, "queries");
  const py::ssize_t M = x.shape(0), D = tr.D;
  check_len(alpha, M, "alpha");
  check_len(sigma2, M, "sigma2");
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
  out.lam_min = maybe_alloc<double>(result, want, "lam_min", {M});
  out.s0 = maybe_alloc<double>(result, want, "s0", {M});
  out.sum_w2 = maybe_alloc<double>(result, want, "sum_w2", {M});
  out.s2 = maybe_alloc<double>(result, want, "s2", {M});
  out.s1 = maybe_alloc<double>(result, want, "s1", {M, D});
  out.centre = maybe_alloc<double>(result, want, "centre", {M, D});
  if (M > 0)
    run_interruptible([&](const StopFn& poll) { return run_engine<T>(tr, qs, out, opt, poll); });
  return result;
}

// Runs the whole sampler loop (mixscore/sampler.hpp) on x in place. Returns -1, or the step
// after which the state held NaN/Inf (the loop stopped there).
template <typename T>
int64_t sample(const TrainArrays<T>& train, py::array_t<T, py::array::c_style> x,
               carray<double> coef, carray<double> alpha, carray<double> sigma2, bool predictor,
               uint64_t seed, int64_t first_sample, bool end_denoise, carray<int64_t> save_steps,
               std::optional<py::array_t<T, py::array::c_style>> saved,
               const EngineOptions& opt, std::optional<py::function> callback, int64_t every) {
  const TrainSet<T> tr = train.view();
  check_queries(x, tr.D, "x");
  const int64_t n = x.shape(0), S = save_steps.size();
  if (coef.ndim() != 2 || coef.shape(1) != kNumCoef)
    throw std::invalid_argument("coef must be K x " + std::to_string(kNumCoef));
  const int64_t K = coef.shape(0);
  if (K < 1) throw std::invalid_argument("coef: at least one step is needed");
  check_len(alpha, K + 1, "alpha");
  check_len(sigma2, K + 1, "sigma2");
  if (every < 1) throw std::invalid_argument("every must be >= 1");
  for (int64_t s = 0; s < S; ++s) {
    const int64_t k = save_steps.data()[s];
    if (k < 0 || k > K || (s > 0 && k <= save_steps.data()[s - 1]))
      throw std::invalid_argument("save_steps must be increasing step numbers in [0, K]");
  }
  if (S > 0 && (!saved || saved->ndim() != 3 || saved->shape(0) != S ||
                saved->shape(1) != n || saved->shape(2) != tr.D))
    throw std::invalid_argument("saved must have shape (len(save_steps), n, D)");
  SamplerPlan plan;
  plan.coef = coef.data();
  plan.alpha = alpha.data();
  plan.sigma2 = sigma2.data();
  plan.K = K;
  plan.predictor = predictor;
  plan.seed = seed;
  plan.first_sample = first_sample;
  plan.end_denoise = end_denoise;
  plan.save_steps = save_steps.data();
  plan.n_save = S;
  T* xs = x.mutable_data();
  T* out = S > 0 ? saved->mutable_data() : nullptr;
  std::function<bool(int64_t)> on_steps;
  if (callback)
    on_steps = [&callback](int64_t k) {
      py::gil_scoped_acquire gil;
      try {
        (*callback)(k);
      } catch (py::error_already_set& e) {
        e.restore();  // re-raised by run_interruptible
        return true;
      }
      return false;
    };
  int64_t bad = -1;
  if (n > 0)
    run_interruptible([&](const StopFn& poll) {
      const SamplerStatus st = run_sampler<T>(tr, xs, n, out, plan, opt, poll, on_steps, every);
      bad = st.bad_step;
      return st.finished;
    });
  return bad;
}

template <typename T>
void bind_dtype(py::module_& m, const std::string& suffix) {
  py::class_<TrainArrays<T>>(m, ("Train_" + suffix).c_str(),
                             "A prepared training set (see backends/cpu.py).")
      .def(py::init<carray<T>, carray<T>, carray<double>, carray<double>,
                    std::optional<carray<double>>, carray<double>>(),
           py::arg("X"), py::arg("Xc"), py::arg("norm2c"), py::arg("normc"), py::arg("logw"),
           py::arg("mu"));
  m.def(("stats_" + suffix).c_str(), &stats<T>, py::arg("train"), py::arg("x"),
        py::arg("alpha"), py::arg("sigma2"), py::arg("want"), py::arg("options"));
  m.def(("sample_" + suffix).c_str(), &sample<T>, py::arg("train"), py::arg("x"),
        py::arg("coef"), py::arg("alpha"), py::arg("sigma2"), py::arg("predictor"),
        py::arg("seed"), py::arg("first_sample"), py::arg("end_denoise"),
        py::arg("save_steps"), py::arg("saved"), py::arg("options"), py::arg("callback"),
        py::arg("every"));
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

  bind_dtype<float>(m, "f32");
  bind_dtype<double>(m, "f64");
  m.attr("DIRECT_MAX_D") = kDirectMaxD;
  register_nearest(m);
  m.def("isa", &selected_isa, "Instruction set of the engine variant in use.");
  m.def("set_isa", [](const std::string& name) { return set_isa(name.c_str()); },
        "Select 'avx512', 'avx2', 'generic' or 'auto'; False if this CPU lacks it.");
  m.def("philox_normals", [](uint64_t seed, carray<int64_t> samples, uint32_t step, int64_t D) {
    if (samples.ndim() != 1) throw std::invalid_argument("samples must be 1-d");
    if (D < 1) throw std::invalid_argument("D must be >= 1");
    py::array_t<double> z({samples.shape(0), py::ssize_t(D)});
    for (py::ssize_t i = 0; i < samples.shape(0); ++i)
      fill_normals(seed, samples.data()[i], 1, step, D, z.mutable_data() + i * D);
    return z;
  }, py::arg("seed"), py::arg("samples"), py::arg("step"), py::arg("D"),
     "Standard normals of the given samples at one step: the samplers' noise.");
  m.def("philox_uniforms", [](uint64_t seed, carray<int64_t> samples, uint32_t step) {
    if (samples.ndim() != 1) throw std::invalid_argument("samples must be 1-d");
    py::array_t<double> u(samples.shape(0));
    for (py::ssize_t i = 0; i < samples.shape(0); ++i)
      u.mutable_data()[i] = philox_uniform(seed, uint64_t(samples.data()[i]), step);
    return u;
  }, py::arg("seed"), py::arg("samples"), py::arg("step"), "Uniforms in [0, 1) per sample.");
  m.def("philox4x32_10", [](std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
    const Philox4x32 b = philox4x32_10(c[0], c[1], c[2], c[3], k[0], k[1]);
    return std::array<uint32_t, 4>{b.v[0], b.v[1], b.v[2], b.v[3]};
  }, py::arg("counter"), py::arg("key"), "The raw Philox4x32-10 block (known-answer tests).");
  m.attr("STEP_START_NOISE") = kStepStartNoise;
  m.attr("STEP_START_INDEX") = kStepStartIndex;
  m.def("max_threads", []() { return omp_get_max_threads(); });
  m.def("exp_nonpositive", [](carray<double> x) {
    py::array_t<double> y(x.size());
    auto* out = y.mutable_data();
    for (py::ssize_t k = 0; k < x.size(); ++k) out[k] = exp_nonpositive(x.data()[k]);
    return y;
  }, "The engine's exp on [-700, 0] (exposed for accuracy tests).");
  // Benchmark helpers measuring the machine's limits (bench/compare.py).
  auto check_run = [](int threads, double seconds) {
    if (threads < 0 || threads > 4096)
      throw py::value_error("threads must be in [0, 4096] (0: all OpenMP threads), got " +
                            std::to_string(threads));
    if (!(seconds > 0 && seconds <= 60)) throw py::value_error("seconds must be in (0, 60]");
  };
  m.def("fma_peak_gflops", [check_run](int threads, double seconds) {
    check_run(threads, seconds);
    py::gil_scoped_release nogil;
    return fma_peak_gflops(threads, seconds);
  }, py::arg("threads") = 0, py::arg("seconds") = 0.2,
     "Benchmark helper measuring the machine's limit: float32 FMA throughput in GFLOP/s\n"
     "(2 flops per lane) with register-resident chains on `threads` threads (0: all), run for\n"
     "about `seconds`, with the instruction set the engine uses.");
  m.def("exp_throughput", [check_run](const std::string& dtype, int threads, double seconds) {
    if (dtype != "float32" && dtype != "float64")
      throw py::value_error("dtype must be 'float32' or 'float64', got '" + dtype + "'");
    check_run(threads, seconds);
    py::gil_scoped_release nogil;
    return exp_throughput(dtype == "float32", threads, seconds);
  }, py::arg("dtype") = "float32", py::arg("threads") = 0, py::arg("seconds") = 0.2,
     "Benchmark helper measuring the machine's limit: exps per second of the engine's own exp\n"
     "(float32 or float64) on an L1-resident buffer of gaps in [-30, 0], vectorized as in the\n"
     "engine, on `threads` threads (0: all), run for about `seconds`.");
}
