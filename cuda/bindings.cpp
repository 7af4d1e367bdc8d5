// mixscore._cuda: the CUDA kernels for Python, on raw device pointers (the Python side,
// python/mixscore/backends/cuda.py, takes them from CuPy's __cuda_array_interface__ or
// torch's data_ptr and passes its library's current stream). The GIL is released while the
// launches are queued; results are ready when the caller's stream is synchronized.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "launch.hpp"

namespace py = pybind11;
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
}
