// pybind11 bindings of the exact nearest-neighbour search (cpp/include/mixscore/nearest.hpp).
// Inputs are validated in Python (python/mixscore/nearest.py); here shapes are checked again so
// that a wrong call cannot read out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "interruptible.hpp"
#include "mixscore/nearest.hpp"

namespace py = pybind11;
using namespace mixscore;

namespace {

template <typename T>
using carray = py::array_t<T, py::array::c_style>;

void require(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}

template <typename T>
py::tuple prepare(carray<T> X, carray<double> mu, int num_threads) {
  require(X.ndim() == 2, "train must be 2-d");
  const py::ssize_t N = X.shape(0), D = X.shape(1);
  require(N >= 1 && D >= 1, "train must be non-empty");
  require(mu.ndim() == 1 && mu.shape(0) == D, "mu must have length D");
  py::array_t<T> packed(nearest_packed_size(N, D));
  py::array_t<double> norm2(N), norm(N);
  T* p = packed.mutable_data();
  double* n2 = norm2.mutable_data();
  double* n1 = norm.mutable_data();
  {
    py::gil_scoped_release release;
    nearest_pack<T>(X.data(), N, D, mu.data(), p, n2, n1, num_threads);
  }
  return py::make_tuple(packed, norm2, norm);
}

template <typename T>
py::tuple search(carray<T> X, carray<T> packed, carray<double> norm2, carray<double> norm,
                 carray<double> mu, carray<T> x, int64_t k, int num_threads) {
  require(X.ndim() == 2 && x.ndim() == 2, "train and queries must be 2-d");
  const py::ssize_t N = X.shape(0), D = X.shape(1), M = x.shape(0);
  require(x.shape(1) == D, "queries have " + std::to_string(x.shape(1)) +
                               " columns, train has " + std::to_string(D));
  require(packed.ndim() == 1 && packed.shape(0) == nearest_packed_size(N, D),
          "packed has the wrong size");
  require(norm2.ndim() == 1 && norm2.shape(0) == N, "norm2 must have length N");
  require(norm.ndim() == 1 && norm.shape(0) == N, "norm must have length N");
  require(mu.ndim() == 1 && mu.shape(0) == D, "mu must have length D");
  require(k >= 1 && k <= N, "k must satisfy 1 <= k <= N = " + std::to_string(N));
  py::array_t<double> dist({M, py::ssize_t(k)});
  py::array_t<int64_t> idx({M, py::ssize_t(k)});
  NearestCounters counters;
  if (M > 0) {
    NearestTrain<T> tr;
    tr.X = X.data();
    tr.packed = packed.data();
    tr.norm2 = norm2.data();
    tr.norm = norm.data();
    tr.mu = mu.data();
    tr.N = N;
    tr.D = D;
    NearestOptions opt;
    opt.num_threads = num_threads;
    const T* xp = x.data();
    double* dp = dist.mutable_data();
    int64_t* ip = idx.mutable_data();
    run_interruptible([&](const StopFn& poll) {
      return nearest_search<T>(tr, xp, M, k, dp, ip, opt, poll, &counters);
    });
  }
  return py::make_tuple(dist, idx, counters.refined);
}

}  // namespace

void register_nearest(py::module_& m) {
  m.def("nearest_prepare_f32", &prepare<float>, py::arg("X"), py::arg("mu"),
        py::arg("num_threads"), "Pack a float32 training set: (packed, norm2, norm).");
  m.def("nearest_prepare_f64", &prepare<double>, py::arg("X"), py::arg("mu"),
        py::arg("num_threads"), "Pack a float64 training set: (packed, norm2, norm).");
  m.def("nearest_search_f32", &search<float>, py::arg("X"), py::arg("packed"), py::arg("norm2"),
        py::arg("norm"), py::arg("mu"), py::arg("x"), py::arg("k"), py::arg("num_threads"),
        "Exact k nearest training points: (distances, indices, entries refined).");
  m.def("nearest_search_f64", &search<double>, py::arg("X"), py::arg("packed"), py::arg("norm2"),
        py::arg("norm"), py::arg("mu"), py::arg("x"), py::arg("k"), py::arg("num_threads"),
        "Exact k nearest training points: (distances, indices, entries refined).");
  m.attr("NEAREST_TRAIN_TILE") = kNearestTrainTile;
}
