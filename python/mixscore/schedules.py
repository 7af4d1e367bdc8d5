"""Forward noising schedules X_t = alpha(t) X_0 + sigma(t) Z and time grids (SCIENCE.md section 2).

Every schedule is the forward SDE dX = f(t) X dt + g(t) dW with
alpha(t) = exp(int_0^t f) and sigma^2(t) = alpha(t)^2 int_0^t g(s)^2 / alpha(s)^2 ds.
Conventions follow Song et al. (2021) unless a constructor says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ._validation import as_times

__all__ = [
    "Schedule", "VP", "OU", "VE", "ExpDiffusionVE", "Brownian", "EDM", "Cosine", "Custom",
]

ArrayLike = float | np.ndarray


class Schedule:
    """Base class. Subclasses define ``alpha``, ``sigma2``, ``f`` and ``g2`` (vectorized, float64).

    Attributes
    ----------
    T : float
        Final (noisiest) time; sampler grids live in (0, T].
    t_end : float
        Default end time of samplers (> 0: the score is singular at t = 0).
    t_max : float
        The largest time at which alpha and sigma are defined: queries of the score may lie in
        (0, t_max]. T for schedules with a finite horizon (VP, OU, cosine, custom); infinite for
        those that keep adding noise (VE, EDM, Brownian), whose samplers may evaluate above T
        (e.g. k-diffusion's stochastic EDM sampler with s_churn).
    """

    T: float = 1.0
    t_end: float = 1e-3
    name: str = "schedule"
    defined_beyond_T: bool = False

    @property
    def t_max(self) -> float:
        return math.inf if self.defined_beyond_T else self.T

    # --- the four defining functions -------------------------------------------------------
    def alpha(self, t: ArrayLike) -> np.ndarray:
        raise NotImplementedError

    def sigma2(self, t: ArrayLike) -> np.ndarray:
        raise NotImplementedError

    def f(self, t: ArrayLike) -> np.ndarray:
        """Drift coefficient f(t) = d log alpha / dt."""
        raise NotImplementedError

    def g2(self, t: ArrayLike) -> np.ndarray:
        """Squared diffusion coefficient g(t)^2 = d sigma^2/dt - 2 f sigma^2."""
        raise NotImplementedError

    # --- derived -----------------------------------------------------------------------------
    def sigma(self, t: ArrayLike) -> np.ndarray:
        return np.sqrt(self.sigma2(t))

    def g(self, t: ArrayLike) -> np.ndarray:
        return np.sqrt(self.g2(t))

    def snr(self, t: ArrayLike) -> np.ndarray:
        """Signal-to-noise ratio alpha^2 / sigma^2."""
        return self.alpha(t) ** 2 / self.sigma2(t)

    def check_times(self, t, *, name: str = "t") -> np.ndarray:
        """Validate times in (0, T] and return them as a float64 array."""
        return as_times(t, self.T, name=name)

    def t_of_sigma(self, s: ArrayLike) -> np.ndarray:
        """Inverse of sigma(t) on [0, T] (bisection; sigma must increase with t)."""
        s = np.asarray(s, dtype=np.float64)
        lo = np.zeros_like(s)
        hi = np.full_like(s, self.T)
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            below = self.sigma(mid) < s
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def grid(self, steps: int, kind: str = "geometric", *, t_end: float | None = None,
             T: float | None = None, rho: float = 7.0) -> np.ndarray:
        """Decreasing time grid of ``steps + 1`` points from T down to t_end.

        kind:
          ``"uniform"``     equal steps in t;
          ``"geometric"``   (alias ``"log"``) equal ratios t_{i+1}/t_i;
          ``"exponential"`` the bounded-target paper's grid (its Eq. 41) with the printed gamma
                            corrected: geometric from t_1 (= t_end, default 1e-4) to T, so that
                            t_{i+1} = t_i / (1 - gamma), gamma = 1 - (t_1/T)^{1/(K-1)};
          ``"karras"``      Karras et al. (2022) rho-spacing in sigma, mapped back to t.
        """
        steps = int(steps)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        T = self.T if T is None else float(T)
        if t_end is None:
            t_end = 1e-4 if kind == "exponential" else self.t_end
        t_end = float(t_end)
        if not (0.0 < t_end < T <= self.T):
            raise ValueError(
                f"grid needs 0 < t_end < T <= schedule.T; got t_end={t_end}, T={T}, "
                f"schedule.T={self.T}")
        if kind == "uniform":
            ts = np.linspace(T, t_end, steps + 1)
        elif kind in ("geometric", "log", "exponential"):
            ts = np.geomspace(T, t_end, steps + 1)
        elif kind == "karras":
            smax, smin = float(self.sigma(T)), float(self.sigma(t_end))
            i = np.arange(steps + 1) / steps
            sig = (smax ** (1 / rho) + i * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
            ts = self.t_of_sigma(sig)
        else:
            raise ValueError(
                f"unknown grid kind {kind!r}; expected 'uniform', 'geometric', 'log', "
                "'exponential' or 'karras'")
        ts[0], ts[-1] = T, t_end
        return ts

    def check_grid(self, ts, *, name: str = "grid") -> np.ndarray:
        """Validate a user time grid: 1-d, strictly decreasing, inside (0, T]; the last time
        may be exactly 0 (k-diffusion's ``get_sigmas_karras`` and score_sde end there: the
        samplers then never evaluate the score at 0, see ``mixscore.sampling``)."""
        ts = np.asarray(ts)
        if ts.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be numeric, got dtype {ts.dtype}")
        ts = ts.astype(np.float64)
        if ts.ndim != 1 or ts.size < 2:
            raise ValueError(
                f"{name} must be a 1-d array of at least 2 times, got shape {ts.shape}")
        ok = np.isfinite(ts) & (ts > 0) & (ts <= self.T)
        ok[-1] |= ts[-1] == 0
        if not np.all(ok):
            i = int(np.argmin(ok))
            raise ValueError(f"{name}[{i}] = {float(ts[i])!r} is outside (0, T] = (0, {self.T}] "
                             f"(only the last time, {name}[{ts.size - 1}], may be 0)")
        if not np.all(np.diff(ts) < 0):
            i = int(np.argmin(np.diff(ts) < 0))
            raise ValueError(f"{name} must be strictly decreasing (from T towards 0); "
                             f"{name}[{i}] = {float(ts[i])!r} then "
                             f"{name}[{i + 1}] = {float(ts[i + 1])!r}")
        return ts

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class VP(Schedule):
    """Variance-preserving SDE with linear beta (Song et al. 2021): f = -beta/2, g = sqrt(beta),
    beta(t) = beta_min + (beta_max - beta_min) t, alpha = exp(-B(t)/2), sigma^2 = 1 - alpha^2."""

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0,
                 t_end: float = 1e-3):
        if not (beta_min >= 0 and beta_max > 0 and T > 0 and 0 < t_end < T):
            raise ValueError(
                f"VP needs beta_min >= 0, beta_max > 0, 0 < t_end < T; got beta_min={beta_min}, "
                f"beta_max={beta_max}, T={T}, t_end={t_end}")
        self.beta_min, self.beta_max, self.T, self.t_end = map(
            float, (beta_min, beta_max, T, t_end))

    @classmethod
    def song(cls) -> VP:
        """Song et al. (2021) constants: beta in [0.1, 20], T = 1, t_end = 1e-3."""
        return cls(0.1, 20.0, 1.0, 1e-3)

    @classmethod
    def memorization_paper(cls) -> VP:
        """Memorization-and-regularization paper: beta(t) = 0.001 + 2.999 t on [0, 1]."""
        return cls(0.001, 3.0, 1.0, 1e-3)

    @classmethod
    def half_beta(cls, beta_min: float, beta_d: float, T: float = 1.0, t_end: float = 1e-3) -> VP:
        """Generalization-through-variance paper's convention dx = -beta x dt + sqrt(2 beta) dW
        with beta = beta_min + beta_d t (its beta is half of Song's)."""
        return cls(2 * beta_min, 2 * (beta_min + beta_d), T, t_end)

    def _B(self, t):
        t = np.asarray(t, dtype=np.float64)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    def beta(self, t):
        return self.beta_min + (self.beta_max - self.beta_min) * np.asarray(t, dtype=np.float64)

    def alpha(self, t):
        return np.exp(-0.5 * self._B(t))

    def sigma2(self, t):
        return -np.expm1(-self._B(t))  # accurate as t -> 0

    def f(self, t):
        return -0.5 * self.beta(t)

    def g2(self, t):
        return self.beta(t)

    def t_of_sigma(self, s):
        B = -np.log1p(-np.asarray(s, dtype=np.float64) ** 2)
        a, b = 0.5 * (self.beta_max - self.beta_min), self.beta_min
        if a == 0:
            return B / b
        return 2 * B / (b + np.sqrt(b * b + 4 * a * B))


class OU(VP):
    """Ornstein-Uhlenbeck process dX = -X/2 dt + dW (VP with beta = 1), used by the
    bounded-target paper: alpha = e^{-t/2}, sigma^2 = 1 - e^{-t}, T = 10."""

    name = "ou"

    def __init__(self, T: float = 10.0, t_end: float = 1e-4):
        super().__init__(1.0, 1.0, T, t_end)

    @staticmethod
    def ddpm_times(betas) -> np.ndarray:
        """Continuous OU times of DDPM's discrete betas: t_k = -sum_{s<=k} log(1 - beta_s)."""
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or np.any((betas <= 0) | (betas >= 1)):
            raise ValueError("betas must be a 1-d array with values in (0, 1)")
        return -np.cumsum(np.log1p(-betas))

    def __repr__(self) -> str:
        return f"OU(T={self.T!r}, t_end={self.t_end!r})"


class VE(Schedule):
    """Variance-exploding SDE, geometric noise (Song et al. 2021): alpha = 1,
    sigma(t) = sigma_min (sigma_max/sigma_min)^t. With ``exact=True`` sigma^2 is reduced by
    sigma_min^2 so that the SDE started at t = 0 from the data is exact (sigma(0) = 0)."""

    name = "ve"
    defined_beyond_T = True

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, T: float = 1.0,
                 t_end: float = 1e-5, exact: bool = False):
        if not (0 < sigma_min < sigma_max and T > 0 and 0 < t_end < T):
            raise ValueError(
                f"VE needs 0 < sigma_min < sigma_max and 0 < t_end < T; got sigma_min={sigma_min},"
                f" sigma_max={sigma_max}, T={T}, t_end={t_end}")
        self.sigma_min, self.sigma_max, self.T, self.t_end = map(
            float, (sigma_min, sigma_max, T, t_end))
        self.exact = bool(exact)

    @property
    def _log_ratio(self):
        return math.log(self.sigma_max / self.sigma_min)

    def alpha(self, t):
        return np.ones_like(np.asarray(t, dtype=np.float64))

    def sigma2(self, t):
        t = np.asarray(t, dtype=np.float64)
        if self.exact:
            return self.sigma_min**2 * np.expm1(2 * self._log_ratio * t)
        return self.sigma_min**2 * np.exp(2 * self._log_ratio * t)

    def f(self, t):
        return np.zeros_like(np.asarray(t, dtype=np.float64))

    def g2(self, t):
        t = np.asarray(t, dtype=np.float64)
        return 2 * self._log_ratio * self.sigma_min**2 * np.exp(2 * self._log_ratio * t)

    @classmethod
    def memorization_paper(cls) -> ExpDiffusionVE:
        """The memorization paper's VE run, as its code runs it: diffusion coefficient g = 10^t,
        sigma^2 = (100^t - 1) / (2 ln 10), T = 1."""
        return ExpDiffusionVE(10.0)


class ExpDiffusionVE(Schedule):
    """VE SDE dX = base^t dW: alpha = 1, sigma^2(t) = (base^{2t} - 1) / (2 ln base)."""

    name = "ve_exp_diffusion"
    defined_beyond_T = True

    def __init__(self, base: float = 10.0, T: float = 1.0, t_end: float = 1e-3):
        if not (base > 1 and T > 0 and 0 < t_end < T):
            raise ValueError(f"need base > 1 and 0 < t_end < T; got base={base}, T={T}, "
                             f"t_end={t_end}")
        self.base, self.T, self.t_end = float(base), float(T), float(t_end)

    def alpha(self, t):
        return np.ones_like(np.asarray(t, dtype=np.float64))

    def sigma2(self, t):
        lb = math.log(self.base)
        return np.expm1(2 * lb * np.asarray(t, dtype=np.float64)) / (2 * lb)

    def f(self, t):
        return np.zeros_like(np.asarray(t, dtype=np.float64))

    def g2(self, t):
        return self.base ** (2 * np.asarray(t, dtype=np.float64))


class Brownian(Schedule):
    """Brownian motion dX = dW (VE with g = 1): alpha = 1, sigma^2 = t."""

    name = "brownian"
    defined_beyond_T = True

    def __init__(self, T: float = 1.0, t_end: float = 1e-3):
        if not (T > 0 and 0 < t_end < T):
            raise ValueError(f"need 0 < t_end < T; got T={T}, t_end={t_end}")
        self.T, self.t_end = float(T), float(t_end)

    def alpha(self, t):
        return np.ones_like(np.asarray(t, dtype=np.float64))

    def sigma2(self, t):
        return np.array(t, dtype=np.float64)

    def f(self, t):
        return np.zeros_like(np.asarray(t, dtype=np.float64))

    def g2(self, t):
        return np.ones_like(np.asarray(t, dtype=np.float64))

    def t_of_sigma(self, s):
        return np.asarray(s, dtype=np.float64) ** 2


class EDM(Schedule):
    """Karras et al. (2022) EDM: alpha = 1, sigma = t (so g^2 = 2t), T = sigma_max,
    t_end = sigma_min; its natural grid is ``grid(n, "karras")`` with rho = 7."""

    name = "edm"
    defined_beyond_T = True

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0):
        if not (0 < sigma_min < sigma_max):
            raise ValueError(f"need 0 < sigma_min < sigma_max; got {sigma_min}, {sigma_max}")
        self.T, self.t_end = float(sigma_max), float(sigma_min)

    def alpha(self, t):
        return np.ones_like(np.asarray(t, dtype=np.float64))

    def sigma2(self, t):
        return np.asarray(t, dtype=np.float64) ** 2

    def f(self, t):
        return np.zeros_like(np.asarray(t, dtype=np.float64))

    def g2(self, t):
        return 2 * np.asarray(t, dtype=np.float64)

    def t_of_sigma(self, s):
        return np.array(s, dtype=np.float64)

    def __repr__(self) -> str:
        return f"EDM(sigma_min={self.t_end!r}, sigma_max={self.T!r})"


class Cosine(Schedule):
    """Nichol & Dhariwal (2021) cosine schedule in continuous time:
    alpha^2(t) = cos^2(pi/2 (t+s)/(1+s)) / cos^2(pi/2 s/(1+s)), sigma^2 = 1 - alpha^2.
    T defaults to 0.999 (alpha -> 0 and f -> -inf at t = 1)."""

    name = "cosine"

    def __init__(self, s: float = 0.008, T: float = 0.999, t_end: float = 1e-3):
        if not (s > 0 and 0 < t_end < T < 1):
            raise ValueError(f"need s > 0 and 0 < t_end < T < 1; got s={s}, T={T}, t_end={t_end}")
        self.s, self.T, self.t_end = float(s), float(T), float(t_end)

    def _phase(self, t):
        return 0.5 * math.pi * (np.asarray(t, dtype=np.float64) + self.s) / (1 + self.s)

    def alpha(self, t):
        return np.cos(self._phase(t)) / math.cos(0.5 * math.pi * self.s / (1 + self.s))

    def sigma2(self, t):
        # 1 - cos^2(p)/cos^2(p0) = (cos^2 p0 - cos^2 p)/cos^2 p0 = sin(p - p0) sin(p + p0)/cos^2 p0
        p0 = 0.5 * math.pi * self.s / (1 + self.s)
        p = self._phase(t)
        return np.sin(p - p0) * np.sin(p + p0) / math.cos(p0) ** 2

    def f(self, t):
        return -0.5 * math.pi / (1 + self.s) * np.tan(self._phase(t))

    def g2(self, t):
        # d sigma^2/dt - 2 f sigma^2 with sigma^2 = 1 - alpha^2: = -2 f
        return -2 * self.f(t)


class Custom(Schedule):
    """A user schedule, from ``alpha(t)`` and ``sigma(t)`` callables (f and g by central
    differences) or from drift and diffusion coefficients ``f(t)``, ``g(t)`` of the forward SDE
    (alpha and sigma^2 by integrating d log alpha/dt = f, d sigma^2/dt = 2 f sigma^2 + g^2 with
    RK4 on a fine grid and cubic Hermite interpolation using the exact derivatives)."""

    name = "custom"

    def __init__(self, *, alpha: Callable | None = None, sigma: Callable | None = None,
                 f: Callable | None = None, g: Callable | None = None, T: float = 1.0,
                 t_end: float = 1e-3, n_quad: int = 4096):
        if not (T > 0 and 0 < t_end < T):
            raise ValueError(f"need 0 < t_end < T; got T={T}, t_end={t_end}")
        self.T, self.t_end = float(T), float(t_end)
        if alpha is not None and sigma is not None and f is None and g is None:
            self._alpha_fn, self._sigma_fn = alpha, sigma
            self._mode = "alpha_sigma"
        elif f is not None and g is not None and alpha is None and sigma is None:
            self._f_fn, self._g_fn = f, g
            self._mode = "f_g"
            self._tabulate(int(n_quad))
        else:
            raise ValueError("Custom schedule needs either (alpha=, sigma=) or (f=, g=) callables")
        probe = np.linspace(self.T / 1000, self.T, 1000)
        s = self.sigma2(probe)
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError("Custom schedule: sigma(t) must be finite and > 0 on (0, T]")
        a = self.alpha(probe)
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError("Custom schedule: alpha(t) must be finite and >= 0 on (0, T]")

    def _call(self, fn, t):
        t = np.asarray(t, dtype=np.float64)
        v = np.asarray(fn(t), dtype=np.float64)
        return np.broadcast_to(v, t.shape).copy() if v.shape != t.shape else v

    def _tabulate(self, n):
        ts = np.linspace(0.0, self.T, n + 1)
        h = ts[1] - ts[0]

        def rhs(t, y):  # y = (log alpha, sigma^2)
            fv = self._call(self._f_fn, t)
            gv = self._call(self._g_fn, t)
            return np.stack([fv, 2 * fv * y[1] + gv * gv])

        y = np.zeros((2, n + 1))
        for k in range(n):
            t0, y0 = ts[k], y[:, k]
            k1 = rhs(t0, y0)
            k2 = rhs(t0 + h / 2, y0 + h / 2 * k1)
            k3 = rhs(t0 + h / 2, y0 + h / 2 * k2)
            k4 = rhs(t0 + h, y0 + h * k3)
            y[:, k + 1] = y0 + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        self._ts, self._y = ts, y
        self._dy = rhs(ts, y)

    def _hermite(self, t, row):
        t = np.asarray(t, dtype=np.float64)
        h = self._ts[1] - self._ts[0]
        k = np.clip(np.floor(t / h).astype(np.int64), 0, len(self._ts) - 2)
        s = (t - self._ts[k]) / h
        y0, y1 = self._y[row, k], self._y[row, k + 1]
        d0, d1 = self._dy[row, k] * h, self._dy[row, k + 1] * h
        s2, s3 = s * s, s * s * s
        return ((2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * d0 + (-2 * s3 + 3 * s2) * y1
                + (s3 - s2) * d1)

    def alpha(self, t):
        if self._mode == "alpha_sigma":
            return self._call(self._alpha_fn, t)
        return np.exp(self._hermite(t, 0))

    def sigma2(self, t):
        if self._mode == "alpha_sigma":
            s = self._call(self._sigma_fn, t)
            if np.any(s < 0):
                raise ValueError("Custom schedule: sigma(t) returned a negative value")
            return s * s
        return self._hermite(t, 1)

    def _ddt(self, fn, t):
        t = np.asarray(t, dtype=np.float64)
        h = 1e-6 * np.maximum(1.0, np.abs(t))
        lo = np.maximum(t - h, 0.0)
        hi = np.minimum(t + h, self.T)
        return (fn(hi) - fn(lo)) / (hi - lo)

    def f(self, t):
        if self._mode == "f_g":
            return self._call(self._f_fn, t)
        return self._ddt(lambda s: np.log(self.alpha(s)), t)

    def g2(self, t):
        if self._mode == "f_g":
            return self._call(self._g_fn, t) ** 2
        return self._ddt(self.sigma2, t) - 2 * self.f(t) * self.sigma2(t)

    def __repr__(self) -> str:
        return f"Custom(mode={self._mode!r}, T={self.T!r}, t_end={self.t_end!r})"
