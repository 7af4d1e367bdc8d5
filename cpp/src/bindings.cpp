// pybind11 bindings: module mixscore._core. Inputs are validated in Python (backends/cpu.py,
// nearest.py); here arrays are checked for dtype, shape and layout so that a wrong call cannot
// read out of bounds. The training set is prepared once here (Prepared_f32 / Prepared_f64).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "mixscore/draws.hpp"
#include "mixscore/engine.hpp"
#include "mixscore/fastexp.hpp"
#include "mixscore/nearest.hpp"
#include "mixscore/philox.hpp"
#include "mixscore/prepared.hpp"
#include "mixscore/sampler.hpp"
#include "interruptible.hpp"
#include "sampler_binding.hpp"

namespace py = pybind11;
using namespace mixscore;

using binding::carray;
using binding::check_len;

namespace {

template <typename T>
T* maybe_alloc(py::dict& result, const std::set<std::string>& want, const char* name,
               std::vector<py::ssize_t> shape) {
  if (!want.count(name)) return nullptr;
  py::array_t<T> a(shape);
  result[name] = a;
  return a.mutable_data();
}

// The prepared training set (mixscore/prepared.hpp) with the arrays it reads, kept alive here.
// Pickled as its inputs and rebuilt (the preparation is deterministic).
template <typename T>
struct PyPrepared {
  carray<T> X;
  std::optional<carray<double>> logw;
  int num_threads;
  std::unique_ptr<Prepared<T>> prep;

  PyPrepared(py::array X_, std::optional<carray<double>> logw_, int64_t row_offset,
             int64_t global_n, std::optional<double> logw_sum, int num_threads_)
      : X(as_matrix(X_)), logw(logw_), num_threads(num_threads_) {
    const int64_t N = X.shape(0), D = X.shape(1);
    if (logw) check_len(*logw, N, "logw");
    if (num_threads < 0)
      throw std::invalid_argument("num_threads must be >= 0 (0 = all), got " +
                                  std::to_string(num_threads));
    const double lws = logw_sum ? *logw_sum : std::numeric_limits<double>::quiet_NaN();
    const double* lw = logw ? logw->data() : nullptr;
    py::gil_scoped_release release;
    prep = std::make_unique<Prepared<T>>(X.data(), N, D, lw, row_offset, global_n, lws,
                                         num_threads);
  }

  static carray<T> as_matrix(const py::array& a) {
    if (!py::isinstance<py::array_t<T>>(a))
      throw std::invalid_argument(std::string("X: expected a ") + dtype_name() +
                                  " array, got dtype " + std::string(py::str(a.dtype())));
    if (a.ndim() != 2 || a.shape(0) < 1 || a.shape(1) < 1)
      throw std::invalid_argument("X: expected a non-empty 2-d array (N, D), got " +
                                  std::to_string(a.ndim()) + " dimensions");
    return carray<T>::ensure(a);
  }
  static const char* dtype_name() { return sizeof(T) == 4 ? "float32" : "float64"; }

  py::tuple state() const {
    return py::make_tuple(X, logw ? py::object(*logw) : py::none(), prep->row_offset(),
                          prep->global_n(), prep->logw_sum(), num_threads);
  }
};

// x as a C-contiguous array of the prepared set's dtype with D columns, or a clear error.
template <typename T>
carray<T> queries(const py::array& x, int64_t D, const char* what) {
  if (!py::isinstance<py::array_t<T>>(x))
    throw std::invalid_argument(std::string(what) + ": expected a " +
                                PyPrepared<T>::dtype_name() +
                                " array (the dtype of the prepared training set), got dtype " +
                                std::string(py::str(x.dtype())));
  if (x.ndim() != 2 || x.shape(1) != D)
    throw std::invalid_argument(std::string(what) + ": expected a 2-d array with " +
                                std::to_string(D) + " columns");
  return carray<T>::ensure(x);
}

template <typename T>
py::dict stats(const PyPrepared<T>& train, const py::array& x_, carray<double> alpha,
               carray<double> sigma2, const std::set<std::string>& want,
               const EngineOptions& opt) {
  const TrainSet<T> tr = train.prep->view();
  const carray<T> x = queries<T>(x_, tr.D, "x");
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

// R posterior draws per query (mixscore/draws.hpp): (M, R) local training indices. rows: the
// stream row id of each query; key: the Philox key (seed ^ DRAWS_KEY).
template <typename T>
py::array_t<int64_t> draws(const PyPrepared<T>& train, const py::array& x_, carray<double> alpha,
                           carray<double> sigma2, int64_t R, uint64_t key, carray<int64_t> rows,
                           uint32_t first_step, const EngineOptions& opt) {
  const TrainSet<T> tr = train.prep->view();
  const carray<T> x = queries<T>(x_, tr.D, "x");
  const py::ssize_t M = x.shape(0);
  check_len(alpha, M, "alpha");
  check_len(sigma2, M, "sigma2");
  check_len(rows, M, "rows");
  if (R < 1)
    throw std::invalid_argument("R (the number of posterior draws) must be >= 1, got " +
                                std::to_string(R));
  if (uint64_t(first_step) + uint64_t(R) > (uint64_t(1) << 32))
    throw std::invalid_argument("first_step + R must be <= 2**32 (the Philox step counter)");
  Queries<T> qs;
  qs.x = x.data();
  qs.alpha = alpha.data();
  qs.sigma2 = sigma2.data();
  qs.M = M;
  DrawSpec spec;
  spec.R = R;
  spec.key = key;
  spec.rows = rows.data();
  spec.first_step = first_step;
  py::array_t<int64_t> out({M, py::ssize_t(R)});
  int64_t* op = out.mutable_data();
  if (M > 0)
    run_interruptible(
        [&](const StopFn& poll) { return posterior_draws<T>(tr, qs, spec, op, opt, poll); });
  return out;
}

// Runs the whole sampler loop (mixscore/sampler.hpp) on x in place. Returns -1, or the step
// after which the state held NaN/Inf (the loop stopped there).
template <typename T>
int64_t sample(const PyPrepared<T>& train, py::array_t<T, py::array::c_style> x,
               carray<double> coef, carray<double> alpha, carray<double> sigma2, bool predictor,
               uint64_t seed, int64_t first_sample, bool end_denoise, carray<int64_t> save_steps,
               std::optional<py::array_t<T, py::array::c_style>> saved,
               const EngineOptions& opt, std::optional<py::function> callback, int64_t every,
               std::optional<carray<int64_t>> draws, std::optional<carray<double>> eb_log_c,
               bool eb_density, std::optional<carray<double>> shift,
               std::optional<carray<double>> shift_scale, std::optional<carray<int64_t>> rows) {
  const TrainSet<T> tr = train.prep->view();
  if (x.ndim() != 2 || x.shape(1) != tr.D)
    throw std::invalid_argument("x: expected a 2-d array with " + std::to_string(tr.D) +
                                " columns");
  const int64_t n = x.shape(0), S = save_steps.size();
  SamplerPlan plan = binding::checked_plan(coef, alpha, sigma2, predictor, seed, end_denoise,
                                           save_steps, draws, eb_log_c, eb_density,
                                           shift_scale, every);
  if (rows) check_len(*rows, n, "rows");
  if (bool(shift) != bool(shift_scale))
    throw std::invalid_argument("shift and shift_scale go together");
  if (shift) check_len(*shift, tr.D, "shift");
  if (S > 0 && (!saved || saved->ndim() != 3 || saved->shape(0) != S ||
                saved->shape(1) != n || saved->shape(2) != tr.D))
    throw std::invalid_argument("saved must have shape (len(save_steps), n, D)");
  plan.first_sample = first_sample;
  plan.rows = rows ? rows->data() : nullptr;
  plan.shift = shift ? shift->data() : nullptr;
  T* xs = x.mutable_data();
  T* out = S > 0 ? saved->mutable_data() : nullptr;
  const std::function<bool(int64_t)> on_steps = binding::steps_callback(callback);
  int64_t bad = -1;
  if (n > 0)
    run_interruptible([&](const StopFn& poll) {
      const SamplerStatus st = run_sampler<T>(tr, xs, n, out, plan, opt, poll, on_steps, every);
      bad = st.bad_step;
      return st.finished;
    });
  return bad;
}

// Exact k nearest training points (mixscore/nearest.hpp): (distances, indices, entries
// refined). Indices are global (row_offset + local index).
template <typename T>
py::tuple nearest(const PyPrepared<T>& train, const py::array& x_, int64_t k,
                  const EngineOptions& opt) {
  const TrainSet<T> tr = train.prep->view();
  const carray<T> x = queries<T>(x_, tr.D, "x");
  if (k < 1 || k > tr.N)
    throw std::invalid_argument("k must satisfy 1 <= k <= N = " + std::to_string(tr.N) +
                                ", got " + std::to_string(k));
  const py::ssize_t M = x.shape(0);
  py::array_t<double> dist({M, py::ssize_t(k)});
  py::array_t<int64_t> idx({M, py::ssize_t(k)});
  NearestCounters counters;
  NearestOptions nopt;
  nopt.num_threads = opt.num_threads;
  if (M > 0) {
    const T* xp = x.data();
    double* dp = dist.mutable_data();
    int64_t* ip = idx.mutable_data();
    run_interruptible([&](const StopFn& poll) {
      return nearest_search<T>(tr, xp, M, k, dp, ip, nopt, poll, &counters);
    });
  }
  return py::make_tuple(dist, idx, counters.refined);
}

template <typename T>
void bind_dtype(py::module_& m, const std::string& suffix) {
  using P = PyPrepared<T>;
  py::class_<P>(m, ("Prepared_" + suffix).c_str(),
                "A training set prepared once for the statistics, the nearest search and the\n"
                "fused sampler (mixscore/prepared.hpp). row_offset: global index of row 0\n"
                "(shards); global_n: the number of points of all shards (0: N); logw_sum:\n"
                "log sum pi of all shards (None: this shard's).")
      .def(py::init<py::array, std::optional<carray<double>>, int64_t, int64_t,
                    std::optional<double>, int>(),
           py::arg("X"), py::arg("logw") = py::none(), py::arg("row_offset") = 0,
           py::arg("global_n") = 0, py::arg("logw_sum") = py::none(),
           py::arg("num_threads") = 0)
      .def_property_readonly("N", [](const P& p) { return p.prep->N(); })
      .def_property_readonly("D", [](const P& p) { return p.prep->D(); })
      .def_property_readonly("dtype", [](const P&) { return py::dtype::of<T>(); })
      .def_property_readonly("row_offset", [](const P& p) { return p.prep->row_offset(); })
      .def_property_readonly("global_n", [](const P& p) { return p.prep->global_n(); })
      .def_property_readonly("logw_sum", [](const P& p) { return p.prep->logw_sum(); })
      .def_property_readonly("mu", [](const P& p) {
        const auto& mu = p.prep->mu();
        return py::array_t<double>(py::ssize_t(mu.size()), mu.data());
      })
      .def_property_readonly("visit_order", [](const P& p) {
        // the order in which the driver visits the points (the direct path's k-d tiles for
        // D < 16): what makes a posterior draw's realization (draws.hpp)
        const TrainSet<T> tr = p.prep->view();
        py::array_t<int64_t> order(tr.N);
        for (int64_t k = 0; k < tr.N; ++k) order.mutable_data()[k] = tr.order ? tr.order[k] : k;
        return order;
      })
      .def_readonly("X", &P::X)
      .def(py::pickle([](const P& p) { return p.state(); },
                      [](py::tuple t) {
                        if (t.size() != 6) throw std::runtime_error("bad Prepared state");
                        return P(t[0].cast<py::array>(),
                                 t[1].cast<std::optional<carray<double>>>(),
                                 t[2].cast<int64_t>(), t[3].cast<int64_t>(),
                                 t[4].cast<std::optional<double>>(), t[5].cast<int>());
                      }));
  m.def("stats", &stats<T>, py::arg("prepared"), py::arg("x"), py::arg("alpha"),
        py::arg("sigma2"), py::arg("want"), py::arg("options"));
  m.def("draws", &draws<T>, py::arg("prepared"), py::arg("x"), py::arg("alpha"),
        py::arg("sigma2"), py::arg("R"), py::arg("key"), py::arg("rows"),
        py::arg("first_step"), py::arg("options"));
  m.def("nearest", &nearest<T>, py::arg("prepared"), py::arg("x"), py::arg("k"),
        py::arg("options"));
  m.def("sample", &sample<T>, py::arg("prepared"), py::arg("x"), py::arg("coef"),
        py::arg("alpha"), py::arg("sigma2"), py::arg("predictor"), py::arg("seed"),
        py::arg("first_sample"), py::arg("end_denoise"), py::arg("save_steps"),
        py::arg("saved"), py::arg("options"), py::arg("callback"), py::arg("every"),
        py::arg("draws") = py::none(), py::arg("eb_log_c") = py::none(),
        py::arg("eb_density") = false, py::arg("shift") = py::none(),
        py::arg("shift_scale") = py::none(), py::arg("rows") = py::none());
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
  m.attr("MAX_ABS_FLOAT32") = kMaxAbsFloat32;  // (mixscore/sampler.hpp)
  m.attr("MAX_ABS_FLOAT64") = kMaxAbsFloat64;
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
  m.attr("DRAWS_KEY") = kDrawsKey;
  m.def("max_threads", []() { return omp_get_max_threads(); });
  m.def("exp_nonpositive", [](carray<double> x) {
    py::array_t<double> y(x.size());
    auto* out = y.mutable_data();
    for (py::ssize_t k = 0; k < x.size(); ++k) out[k] = exp_nonpositive(x.data()[k]);
    return y;
  }, "The engine's exp on [-700, 0] (exposed for accuracy tests).");
}
