// Shared by the pybind11 binding files (mixscore._core, mixscore._cuda): the sampler plan read
// from the arrays of python/mixscore/sampling (methods.py, fold.py) and checked, and the
// progress callback, so the C++ loop and the GPU loop take one plan the same way.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include "mixscore/sampler.hpp"

namespace mixscore {
namespace binding {

namespace py = pybind11;

template <typename T>
using carray = py::array_t<T, py::array::c_style>;

inline void check_len(const py::array& a, py::ssize_t n, const char* what) {
  if (a.ndim() != 1 || a.shape(0) != n)
    throw std::invalid_argument(std::string(what) + ": expected a 1-d array of length " +
                                std::to_string(n));
}

// The plan's step tables (K = coef.shape(0) steps), checked; the caller sets rows and shift.
inline SamplerPlan checked_plan(const carray<double>& coef, const carray<double>& alpha,
                                const carray<double>& sigma2, bool predictor, uint64_t seed,
                                bool end_denoise, const carray<int64_t>& save_steps,
                                const std::optional<carray<int64_t>>& draws,
                                const std::optional<carray<double>>& eb_log_c, bool eb_density,
                                const std::optional<carray<double>>& shift_scale,
                                int64_t every) {
  if (coef.ndim() != 2 || coef.shape(1) != kNumCoef)
    throw std::invalid_argument("coef must be K x " + std::to_string(kNumCoef));
  const int64_t K = coef.shape(0), S = save_steps.size();
  if (K < 1) throw std::invalid_argument("coef: at least one step is needed");
  check_len(alpha, K + 1, "alpha");
  check_len(sigma2, K + 1, "sigma2");
  if (every < 1) throw std::invalid_argument("every must be >= 1");
  if (draws) {
    check_len(*draws, K, "draws");
    for (int64_t k = 0; k < K; ++k) {
      const int64_t R = draws->data()[k];
      if (R < 0 || uint64_t(k + 1) * uint64_t(R) > (uint64_t(1) << 32))
        throw std::invalid_argument("draws: expected counts R >= 0 with steps * R <= 2**32 "
                                    "(the Philox step counter), got " + std::to_string(R) +
                                    " at step " + std::to_string(k));
    }
  }
  if (eb_log_c) check_len(*eb_log_c, K + 1, "eb_log_c");
  if (shift_scale) check_len(*shift_scale, K + 1, "shift_scale");
  for (int64_t s = 0; s < S; ++s) {
    const int64_t k = save_steps.data()[s];
    if (k < 0 || k > K || (s > 0 && k <= save_steps.data()[s - 1]))
      throw std::invalid_argument("save_steps must be increasing step numbers in [0, K]");
  }
  SamplerPlan plan;
  plan.coef = coef.data();
  plan.alpha = alpha.data();
  plan.sigma2 = sigma2.data();
  plan.K = K;
  plan.predictor = predictor;
  plan.seed = seed;
  plan.end_denoise = end_denoise;
  plan.draws = draws ? draws->data() : nullptr;
  plan.eb_log_c = eb_log_c ? eb_log_c->data() : nullptr;
  plan.eb_density = eb_density;
  plan.shift_scale = shift_scale ? shift_scale->data() : nullptr;
  plan.save_steps = save_steps.data();
  plan.n_save = S;
  return plan;
}

// callback(k) as the loops' on_steps: an exception in it stops the loop (true) and is
// re-raised by run_interruptible.
inline std::function<bool(int64_t)> steps_callback(const std::optional<py::function>& callback) {
  if (!callback) return {};
  return [fn = *callback](int64_t k) {
    py::gil_scoped_acquire gil;
    try {
      fn(k);
    } catch (py::error_already_set& e) {
      e.restore();
      return true;
    }
    return false;
  };
}

}  // namespace binding
}  // namespace mixscore
