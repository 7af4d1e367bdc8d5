// mixscore._cuda: the CUDA kernels for Python, on raw device pointers (the Python side,
// python/mixscore/backends/cuda.py, takes them from CuPy's __cuda_array_interface__ or
// torch's data_ptr and passes its library's current stream). The GIL is released while the
// launches are queued; results are ready when the caller's stream is synchronized.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>

#include "interruptible.hpp"     // cpp/src: the GIL released, Ctrl-C polled
#include "launch.hpp"
#include "sampler_binding.hpp"  // cpp/src: the plan from its arrays, the callback

namespace py = pybind11;
using mixscore::run_interruptible;
using mixscore::binding::carray;
using mixscore::binding::check_len;
using mixscore::binding::checked_plan;
using mixscore::binding::steps_callback;
using mixscore::SamplerPlan;
using mixscore::SamplerStatus;
using mixscore::StopFn;
using namespace mixscore::cuda;

namespace {

template <typename T>
const T* ptr(uintptr_t p) {
  return reinterpret_cast<const T*>(p);
}

template <typename T>
void posterior_py(uintptr_t x, uintptr_t q, uintptr_t train, uintptr_t packed, uintptr_t p2,
                  uintptr_t pnorm, uintptr_t xc2, uintptr_t mu, uintptr_t alpha,
                  uintptr_t sigma2, uintptr_t xs2, uintptr_t logw, int64_t M, int64_t N,
                  int64_t D, double mu_norm, double tol, double cap, double dom, double cut,
                  int budget, int products, uintptr_t workspace, int64_t ws_rows,
                  uintptr_t lam_min, uintptr_t best, uintptr_t s0, uintptr_t sum_w2,
                  uintptr_t s1, uintptr_t s2, uintptr_t s0_light, uintptr_t s2_light,
                  uintptr_t s1_light, uintptr_t stream) {
  if (M < 0 || N < 1 || D < 1) throw std::invalid_argument("posterior: need M >= 0, N, D >= 1");
  PosteriorArgs<T> a{ptr<T>(x), ptr<T>(q), ptr<T>(train), ptr<T>(packed), ptr<double>(p2),
                     ptr<double>(pnorm), ptr<double>(xc2), ptr<double>(mu),
                     ptr<double>(alpha), ptr<double>(sigma2), ptr<double>(xs2),
                     ptr<double>(logw), M, N, D, mu_norm, tol, cap, dom, cut, budget, products,
                     reinterpret_cast<void*>(workspace), ws_rows,
                     reinterpret_cast<double*>(lam_min), reinterpret_cast<int64_t*>(best),
                     reinterpret_cast<double*>(s0), reinterpret_cast<double*>(sum_w2),
                     reinterpret_cast<double*>(s2), reinterpret_cast<double*>(s1),
                     reinterpret_cast<double*>(s0_light), reinterpret_cast<double*>(s2_light),
                     reinterpret_cast<double*>(s1_light)};
  py::gil_scoped_release release;
  posterior<T>(a, stream);
}

template <typename T>
void nearest_py(uintptr_t x, uintptr_t q, uintptr_t train, uintptr_t packed, uintptr_t p2,
                uintptr_t xs2, int64_t M, int64_t N, int64_t D, int64_t k, double mu_norm,
                uintptr_t workspace, int64_t ws_rows, uintptr_t sq_dist, uintptr_t index,
                uintptr_t stream) {
  NearestArgs<T> a{ptr<T>(x), ptr<T>(q), ptr<T>(train), ptr<T>(packed), ptr<double>(p2),
                   ptr<double>(xs2), M, N, D, k, mu_norm,
                   reinterpret_cast<void*>(workspace), ws_rows,
                   reinterpret_cast<double*>(sq_dist), reinterpret_cast<int64_t*>(index)};
  py::gil_scoped_release release;
  nearest<T>(a, stream);
}

// The pass's training-set arrays and rule from a dict keyed as posterior_f32's arguments.
template <typename T>
PosteriorArgs<T> training_args(const py::dict& train) {
  auto get = [&](const char* k) { return train[k].cast<uintptr_t>(); };
  PosteriorArgs<T> a{};
  a.train = ptr<T>(get("train"));
  a.packed = ptr<T>(get("packed"));
  a.p2 = ptr<double>(get("p2"));
  a.pnorm = ptr<double>(get("pnorm"));
  a.xc2 = ptr<double>(get("xc2"));
  a.mu = ptr<double>(get("mu"));
  a.logw = ptr<double>(get("logw"));
  a.N = train["N"].cast<int64_t>();
  a.D = train["D"].cast<int64_t>();
  a.mu_norm = train["mu_norm"].cast<double>();
  a.tol = train["tol"].cast<double>();
  a.cap = train["cap"].cast<double>();
  a.dom = train["dom"].cast<double>();
  a.cut = train["cut"].cast<double>();
  a.budget = train["budget"].cast<int>();
  a.workspace = reinterpret_cast<void*>(get("workspace"));
  a.ws_rows = train["ws_rows"].cast<int64_t>();
  if (a.N < 1 || a.D < 1) throw std::invalid_argument("need N, D >= 1");
  return a;
}

// ... and M queries' per-query inputs (as posterior_f32's) for a kernel over their rows.
template <typename T>
PosteriorArgs<T> row_args(const py::dict& train, uintptr_t x, uintptr_t q, uintptr_t alpha,
                          uintptr_t sigma2, uintptr_t xs2, int64_t M, int products) {
  if (M < 0) throw std::invalid_argument("need M >= 0 queries");
  PosteriorArgs<T> a = training_args<T>(train);
  a.x = ptr<T>(x);
  a.q = ptr<T>(q);
  a.alpha = ptr<double>(alpha);
  a.sigma2 = ptr<double>(sigma2);
  a.xs2 = ptr<double>(xs2);
  a.M = M;
  a.products = products;
  return a;
}

// Posterior draws (cuda/draws.cu) of M queries into out (M, R) int64.
template <typename T>
void draws_py(const py::dict& train, uintptr_t x, uintptr_t q, uintptr_t alpha,
              uintptr_t sigma2, uintptr_t xs2, int64_t M, int products, int64_t R,
              uint64_t key, uintptr_t rows, uint32_t first_step, uintptr_t out,
              uintptr_t stream) {
  if (R < 1) throw std::invalid_argument("draws: need R >= 1");
  const DrawsArgs<T> d{row_args<T>(train, x, q, alpha, sigma2, xs2, M, products), R, key,
                       ptr<int64_t>(rows), first_step, reinterpret_cast<int64_t*>(out)};
  py::gil_scoped_release release;
  draws<T>(d, stream);
}

// Covariance noise (cuda/cov_noise.cu) of M queries into out (M, D) float64.
template <typename T>
void cov_noise_py(const py::dict& train, uintptr_t x, uintptr_t q, uintptr_t alpha,
                  uintptr_t sigma2, uintptr_t xs2, int64_t M, int products, uintptr_t mean,
                  uint64_t key, uintptr_t rows, uint32_t step, uintptr_t out,
                  uintptr_t stream) {
  const CovNoiseArgs<T> d{row_args<T>(train, x, q, alpha, sigma2, xs2, M, products),
                          ptr<double>(mean), key, ptr<int64_t>(rows), step,
                          reinterpret_cast<double*>(out)};
  py::gil_scoped_release release;
  cov_noise<T>(d, stream);
}

// The fused sampler loop (cuda/sampler.cu). `train`: the training set's device arrays and the
// pass's rule and workspace, keyed as posterior_f32's arguments. Returns -1, or the step after
// which a state was NaN/Inf (the loop stopped there).
template <typename T>
int64_t sample_py(const py::dict& train, uintptr_t x, int64_t n, uintptr_t saved,
                  uintptr_t rows, uintptr_t shift, carray<int32_t> products,
                  double log_weight_sum, double draws_cut, bool posterior_noise,
                  uint64_t noise_key, double noise_cut, uintptr_t scratch,
                  carray<double> coef, std::optional<carray<int64_t>> draws,
                  carray<double> alpha, carray<double> sigma2, bool predictor, uint64_t seed,
                  bool end_denoise, carray<int64_t> save_steps,
                  std::optional<carray<double>> eb_log_c, bool eb_density,
                  std::optional<carray<double>> shift_scale,
                  std::optional<py::function> callback, int64_t every, uintptr_t stream) {
  const PosteriorArgs<T> a = training_args<T>(train);
  if (n < 0) throw std::invalid_argument("sample: need n >= 0");
  SamplerPlan plan = checked_plan(coef, alpha, sigma2, predictor, seed, end_denoise, save_steps,
                                  draws, eb_log_c, eb_density, shift_scale, every);
  check_len(products, plan.K + 1, "products");
  if ((shift != 0) != bool(shift_scale))
    throw std::invalid_argument("shift and shift_scale go together");
  if (plan.n_save > 0 && saved == 0)
    throw std::invalid_argument("saved is needed with save_steps");
  plan.shift = shift_scale ? ptr<double>(shift) : nullptr;
  const SampleArgs<T> s{a, reinterpret_cast<T*>(x), n, reinterpret_cast<T*>(saved),
                        ptr<int64_t>(rows), ptr<double>(shift), products.data(),
                        log_weight_sum, draws_cut, posterior_noise, noise_key, noise_cut,
                        reinterpret_cast<void*>(scratch)};
  const std::function<bool(int64_t)> on_steps = steps_callback(callback);
  int64_t bad = -1;
  run_interruptible([&](const StopFn& poll) {
    const SamplerStatus st = sample<T>(s, plan, stream, poll, on_steps, every);
    bad = st.bad_step;
    return st.finished;
  });
  return bad;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "mixscore CUDA kernels on device pointers (see python/mixscore/backends/cuda.py)";
  m.def("device_count", &device_count, "Number of visible CUDA devices (0 if none).");
  // keyword arguments only in practice (python/mixscore/backends/cuda.py): the list is long
#define MIXSCORE_POSTERIOR_ARGS \
  py::arg("x"), py::arg("q"), py::arg("train"), py::arg("packed"), py::arg("p2"), \
      py::arg("pnorm"), py::arg("xc2"), py::arg("mu"), py::arg("alpha"), py::arg("sigma2"), \
      py::arg("xs2"), py::arg("logw"), py::arg("M"), py::arg("N"), py::arg("D"), \
      py::arg("mu_norm"), py::arg("tol"), py::arg("cap"), py::arg("dom"), py::arg("cut"), \
      py::arg("budget"), py::arg("products"), py::arg("workspace"), py::arg("ws_rows"), \
      py::arg("lam_min"), py::arg("best"), py::arg("s0"), py::arg("sum_w2"), py::arg("s1"), \
      py::arg("s2"), py::arg("s0_light"), py::arg("s2_light"), py::arg("s1_light"), \
      py::arg("stream")
  m.def("posterior_f32", &posterior_py<float>, MIXSCORE_POSTERIOR_ARGS,
        "The posterior pass, float32 data.");
  m.def("posterior_f64", &posterior_py<double>, MIXSCORE_POSTERIOR_ARGS,
        "The posterior pass, float64 data.");
#undef MIXSCORE_POSTERIOR_ARGS
  m.def("posterior_workspace",
        [](int64_t N, int64_t D, int64_t rows, int products, bool f64) {
          return f64 ? posterior_workspace<double>(N, D, rows, products)
                     : posterior_workspace<float>(N, D, rows, products);
        },
        py::arg("N"), py::arg("D"), py::arg("rows"), py::arg("products"), py::arg("f64"),
        "Bytes of workspace for chunks of `rows` queries.");
  m.attr("DIRECT_MAX_D") = kDirectMaxD;
  m.def("nearest_f32", &nearest_py<float>, "Exact k nearest points, float32 data.");
  m.def("nearest_f64", &nearest_py<double>, "Exact k nearest points, float64 data.");
  m.def("philox_normals",
        [](uint64_t seed, uintptr_t samples, int64_t n, uint32_t step, int64_t D, uintptr_t z,
           uintptr_t stream) {
          py::gil_scoped_release release;
          philox_normals(seed, reinterpret_cast<const int64_t*>(samples), n, step, D,
                         reinterpret_cast<double*>(z), stream);
        },
        py::arg("seed"), py::arg("samples"), py::arg("n"), py::arg("step"), py::arg("D"),
        py::arg("z"), py::arg("stream"),
        "Standard normals of the samples at one step (the CPU samplers' Philox stream).");
  m.def("fp32_fma_peak",
        [] {
          py::gil_scoped_release release;
          return fp32_fma_peak();
        },
        "The measured float32 FMA rate of the current device (FLOP/s).");
  m.attr("MAX_K") = kMaxK;
#define MIXSCORE_SAMPLE_ARGS \
  py::arg("train"), py::arg("x"), py::arg("n"), py::arg("saved"), py::arg("rows"), \
      py::arg("shift"), py::arg("products"), py::arg("log_weight_sum"), \
      py::arg("draws_cut"), py::arg("posterior_noise"), py::arg("noise_key"), \
      py::arg("noise_cut"), py::arg("scratch"), py::arg("coef"), py::arg("draws"), \
      py::arg("alpha"), py::arg("sigma2"), py::arg("predictor"), \
      py::arg("seed"), py::arg("end_denoise"), py::arg("save_steps"), py::arg("eb_log_c"), \
      py::arg("eb_density"), py::arg("shift_scale"), py::arg("callback"), py::arg("every"), \
      py::arg("stream")
  m.def("sample_f32", &sample_py<float>, MIXSCORE_SAMPLE_ARGS,
        "The fused sampler loop on the GPU, float32 states (GIL released, Ctrl-C polled).");
  m.def("sample_f64", &sample_py<double>, MIXSCORE_SAMPLE_ARGS,
        "The fused sampler loop on the GPU, float64 states.");
#undef MIXSCORE_SAMPLE_ARGS
  // the kernels over query rows (draws, cov_noise): the queries' arguments, then their own
#define MIXSCORE_ROW_ARGS \
  py::arg("train"), py::arg("x"), py::arg("q"), py::arg("alpha"), py::arg("sigma2"), \
      py::arg("xs2"), py::arg("M"), py::arg("products")
  m.def("draws_f32", &draws_py<float>, MIXSCORE_ROW_ARGS, py::arg("R"), py::arg("key"),
        py::arg("rows"), py::arg("first_step"), py::arg("out"), py::arg("stream"),
        "Posterior draws (local training indices), float32 data.");
  m.def("draws_f64", &draws_py<double>, MIXSCORE_ROW_ARGS, py::arg("R"), py::arg("key"),
        py::arg("rows"), py::arg("first_step"), py::arg("out"), py::arg("stream"),
        "Posterior draws (local training indices), float64 data.");
  m.def("cov_noise_f32", &cov_noise_py<float>, MIXSCORE_ROW_ARGS, py::arg("mean"),
        py::arg("key"), py::arg("rows"), py::arg("step"), py::arg("out"), py::arg("stream"),
        "Noise with covariance Cov_w(X_0) per query, float32 data.");
  m.def("cov_noise_f64", &cov_noise_py<double>, MIXSCORE_ROW_ARGS, py::arg("mean"),
        py::arg("key"), py::arg("rows"), py::arg("step"), py::arg("out"), py::arg("stream"),
        "Noise with covariance Cov_w(X_0) per query, float64 data.");
#undef MIXSCORE_ROW_ARGS
  m.def("sampler_scratch",
        [](int64_t n, int64_t D, bool predictor, int64_t max_draws, bool posterior_noise,
           bool f64) {
          return f64 ? sampler_scratch<double>(n, D, predictor, max_draws, posterior_noise)
                     : sampler_scratch<float>(n, D, predictor, max_draws, posterior_noise);
        },
        py::arg("n"), py::arg("D"), py::arg("predictor"), py::arg("max_draws"),
        py::arg("posterior_noise"), py::arg("f64"),
        "Bytes of scratch the sampler loop needs for n samples.");
}
