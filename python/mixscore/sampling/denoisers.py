"""What a sampler evaluates: a denoiser xh = E[X_0 | x, t] in float64, from an
EmpiricalScore or from any user callable (a trained network) returning a score, a denoiser or
a noise prediction or a v-prediction."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import _core
from .._validation import max_abs_value
from ..backends import _xp
from ..empirical import EmpiricalScore
from ..posterior import posterior_op
from ..schedules import Schedule

OUTPUT_KINDS = ("score", "denoised", "eps", "v")


class ModelDenoiser:
    """The exact empirical denoiser at explicit (alpha, sigma^2), as the fused loop calls it."""

    def __init__(self, model: EmpiricalScore, y=None):
        self.model = model
        self.y = y  # the labels of the current batch (conditional sampling), or None
        self.schedule = model.schedule
        self.dtype = model.dtype
        self.dim = model.dim
        # a state beyond it has diverged (the engine's range: _validation.check_magnitudes)
        self.state_limit = max_abs_value(self.dtype, self.dim)

    def __call__(self, x, t, alpha, sigma2):
        xh = self.model.stats_at_noise(x, alpha, sigma2, include=("denoised",), t=t,
                                       y=self.y).denoised
        return np.asarray(xh, dtype=np.float64)

    def at_times(self, x, t):
        """Per-sample times (the adaptive RK45 path)."""
        return np.asarray(self.model.denoise(x, t, y=self.y), dtype=np.float64)

    def draws_mean(self, x, t, R: int, seed: int, ids: np.ndarray, step: int) -> np.ndarray:
        """The mean of R training points drawn from w(x, t) (the naive estimator's
        denoiser), from the Philox streams (seed, sample ids, counter steps step R ..)."""
        idx = posterior_op(self.model, "draws", x, t, self.y, R=R, seed=seed,
                           stream=(ids, step * R))
        rows = idx - self.model.row_offset  # (M, R); gathered as one flat list of rows only,
        picked = np.asarray(self.model.train[rows.ravel()], np.float64)  # which shards support
        return picked.reshape(*rows.shape, -1).mean(axis=1)

    def cov_noise(self, x, t, seed: int, ids: np.ndarray, step: int) -> np.ndarray:
        """Noise with covariance Cov_w(X_0) at (x, t), Philox streams (seed, ids, step)."""
        return posterior_op(self.model, "noise", x, t, self.y, seed=seed, stream=(ids, step))


class DeviceDenoiser(ModelDenoiser):
    """The exact empirical denoiser of a model whose training set stays in its array library
    (torch / CuPy on a backend with the ``device_sample`` capability): states and results are
    arrays of that library on its device (float64 results, computed without host copies)."""

    def __init__(self, model: EmpiricalScore):
        super().__init__(model)
        backend = model.backend
        self.xp, self.device, self.backend = backend.xp, backend.device, backend
        self.state_dtype = _xp.float_dtype(self.xp, model.dtype)
        if backend.wide != self.xp.float64:  # e.g. Apple MPS
            raise ValueError(f"sampling with a model on {self.where} needs float64 on that "
                             "device (the steps are float64 operations)")

    @property
    def where(self) -> str:
        """The array library and device (for settings and messages), e.g. 'torch on cpu'."""
        return f"{type(self.model.train).__module__.partition('.')[0]} on {self.device}"

    def __call__(self, x, t, alpha, sigma2):
        xh = self.model.stats_at_noise(x, alpha, sigma2, include=("denoised",), t=t,
                                       y=self.y).denoised
        return self.xp.astype(xh, self.xp.float64)

    def draws_mean(self, x, t, R: int, seed: int, ids: np.ndarray, step: int):
        """The naive estimator's denoiser on the device: the draws (the streams of
        ``ModelDenoiser.draws_mean``; drawn on the device where the backend has the ``draws``
        capability, cuda) index the training set where it lives."""
        xp, (m, d) = self.xp, x.shape
        idx = posterior_op(self.model, "draws", x, t, self.y, R=R, seed=seed,
                           stream=(ids, step * R))
        rows = xp.take(self.model.train, xp.reshape(idx - self.model.row_offset, (-1,)), axis=0)
        return xp.mean(xp.reshape(xp.astype(rows, xp.float64), (m, R, d)), axis=1)

    def states(self, x, name: str = "start"):
        """``x`` (any library, (n, D)) as states in this library, dtype and device (checked
        finite; a no-op for states already there)."""
        return _xp.as_float_matrix(x, name, self.xp, self.device, dtype=self.dtype)

    def normals(self, seed: int, ids: np.ndarray, step: int):
        """The Philox normals (len(ids), D) float64 of streams (seed, ids, step) on the device."""
        return self.backend.normals(seed, ids, step, self.dim)

    def start(self, seed: int, ids: np.ndarray, alpha: float, sigma: float,
              index: np.ndarray | None):
        """Start states: sigma z ("prior") or alpha X_index + sigma z ("exact"), the float64
        operations of the host start, on the device."""
        xp = self.xp
        z = self.normals(seed, ids, _core.STEP_START_NOISE)
        if index is None:
            return xp.astype(sigma * z, self.state_dtype)
        rows = xp.take(self.model.train, _xp.place_like(index, xp, self.device, xp.int64),
                       axis=0)
        return xp.astype(alpha * xp.astype(rows, xp.float64) + sigma * z, self.state_dtype)

    def at_times(self, *_args, **_kwargs):
        raise ValueError(f"per-sample times (rk45) need the host loop; a model on "
                         f"{self.where} samples with the fixed-grid samplers only")


class CallableDenoiser:
    """A user function ``fn(x, t)`` returning the score (default), the denoiser, eps or v."""

    def __init__(self, fn: Callable, schedule: Schedule, output: str, dtype, dim: int | None):
        if output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {output!r}")
        self.fn, self.schedule, self.output = fn, schedule, output
        self.dtype, self.dim = np.dtype(dtype), dim
        self.state_limit = None  # (only NaN/Inf: the function's own range is unknown)
        self.step = None  # set by the loop for error messages

    def _call(self, x, t):
        out = self.fn(x, t)
        out = np.asarray(out)
        if out.shape != x.shape:
            raise ValueError(f"the score callable returned shape {out.shape} for x of shape "
                             f"{x.shape} (t = {_fmt_t(t)}); expected the shape of x")
        if out.dtype.kind not in "fiu":
            raise TypeError(f"the score callable returned dtype {out.dtype}; expected floats")
        out = out.astype(np.float64)
        if not np.all(np.isfinite(out)):
            where = "" if self.step is None else f" at step {self.step}"
            raise ValueError(f"the score callable returned NaN or Inf{where} (t = {_fmt_t(t)})")
        return out

    def _to_denoiser(self, x, out, alpha, sigma2):
        x = np.asarray(x, dtype=np.float64)
        if self.output == "denoised":
            return out
        if self.output == "eps":
            return (x - np.sqrt(sigma2) * out) / alpha
        if self.output == "v":  # v = alpha eps - sigma xh, x = alpha xh + sigma eps (SCIENCE.md)
            return (alpha * x - np.sqrt(sigma2) * out) / (alpha * alpha + sigma2)
        return (x + sigma2 * out) / alpha

    def __call__(self, x, t, alpha, sigma2):
        return self._to_denoiser(x, self._call(x, t), alpha, sigma2)

    def at_times(self, x, t):
        alpha = self.schedule.alpha(t)[:, None]
        sigma2 = self.schedule.sigma2(t)[:, None]
        return self._to_denoiser(x, self._call(x, t), alpha, sigma2)


def _fmt_t(t) -> str:
    t = np.asarray(t)
    return f"{float(t):.6g}" if t.ndim == 0 else f"array of {t.size} times"
