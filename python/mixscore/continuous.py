"""Exact scores of continuous data distributions, for the manifold papers (SCIENCE.md section 7):
a Gaussian N(mean, cov) (singular covariances allowed: data on a subspace), the bounded-target
paper's line-normal data (its Sec. 5 / App. A.3: X1 ~ N(0, 1), X2 = 0) and the uniform
distribution on a circle (Pidstrigach, Sec. 5; a Bessel-function ratio).

Each model offers ``stats(x, t)`` (logpdf, denoised, score, eps), ``score``, ``denoise``,
``eps``, ``logpdf`` and is accepted by ``mixscore.sample`` like an ``EmpiricalScore`` (the
Python loop on its exact denoiser; starts "prior", an array or a point).
"""

from __future__ import annotations

import numpy as np

from ._validation import per_query_times
from .schedules import Schedule

__all__ = ["ContinuousData", "GaussianData", "CircleData", "LineNormalData"]

_LOG_2PI = 1.8378770664093453


class ContinuousData:
    """Base: subclasses define ``_eval(x, alpha, sigma2) -> (logpdf, denoised)`` in float64."""

    dtype = np.dtype(np.float64)

    def __init__(self, schedule: Schedule, dim: int):
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a mixscore Schedule, got {type(schedule).__name__}")
        self.schedule, self.dim = schedule, dim

    def _queries(self, x):
        arr = np.asarray(x, dtype=np.float64)
        single = arr.ndim == 1
        arr = arr[None] if single else arr
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(
                f"x must have shape (M, {self.dim}) or ({self.dim},), got shape {np.shape(x)}"
            )
        return arr, single

    def stats(self, x, t, include=None):
        """logpdf, denoised (E[X_0 | x, t]), score and eps at queries x and times t."""
        from .empirical import ScoreStats

        xq, single = self._queries(x)
        ts = per_query_times(t, xq.shape[0], self.schedule.T)
        a, s2 = self.schedule.alpha(ts), self.schedule.sigma2(ts)
        logp, xh = self._eval(xq, a, s2)
        score = (a[:, None] * xh - xq) / s2[:, None]
        out = {"logpdf": logp, "denoised": xh, "score": score, "eps": -np.sqrt(s2)[:, None] * score}
        if include is not None:
            out = {k: v for k, v in out.items() if k in set(include)}
        if single:
            out = {k: v[0] for k, v in out.items()}
        return ScoreStats(**out)

    def score(self, x, t) -> np.ndarray:
        return self.stats(x, t, ("score",)).score

    def denoise(self, x, t) -> np.ndarray:
        return self.stats(x, t, ("denoised",)).denoised

    def eps(self, x, t) -> np.ndarray:
        return self.stats(x, t, ("eps",)).eps

    def logpdf(self, x, t) -> np.ndarray:
        return self.stats(x, t, ("logpdf",)).logpdf

    def __call__(self, x, t) -> np.ndarray:
        return self.score(x, t)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n points of the clean data distribution."""
        raise NotImplementedError


class GaussianData(ContinuousData):
    """X_0 ~ N(mean, cov), cov symmetric positive semi-definite (zero eigenvalues: data on an
    affine subspace). X_t ~ N(alpha mean, alpha^2 cov + sigma^2 I), so with cov = U diag(lam)
    U^T: score = -U diag(1/(alpha^2 lam + sigma^2)) U^T (x - alpha mean) and
    E[X_0 | x] = mean + U diag(alpha lam / (alpha^2 lam + sigma^2)) U^T (x - alpha mean)."""

    def __init__(self, mean, cov, schedule: Schedule):
        mean = np.asarray(mean, dtype=np.float64)
        if mean.ndim != 1 or not np.all(np.isfinite(mean)):
            raise ValueError(f"mean must be a finite vector (D,), got shape {mean.shape}")
        d = mean.shape[0]
        cov = np.asarray(cov, dtype=np.float64)
        if cov.shape != (d, d) or not np.all(np.isfinite(cov)):
            raise ValueError(f"cov must be a finite ({d}, {d}) matrix, got shape {cov.shape}")
        if not np.allclose(cov, cov.T, rtol=1e-12, atol=1e-12 * np.abs(cov).max()):
            raise ValueError("cov must be symmetric")
        lam, U = np.linalg.eigh(cov)
        if lam.min() < -1e-12 * max(1.0, lam.max()):
            raise ValueError(
                f"cov must be positive semi-definite (smallest eigenvalue {lam.min():.3g})"
            )
        super().__init__(schedule, d)
        self.mean, self.cov, self.lam, self.U = mean, cov, np.maximum(lam, 0.0), U

    def __repr__(self) -> str:
        return f"GaussianData(D={self.dim}, schedule={self.schedule!r})"

    def _eval(self, x, a, s2):
        v = (a[:, None] ** 2) * self.lam[None] + s2[:, None]  # (M, D) variances, eigenbasis
        z = (x - a[:, None] * self.mean) @ self.U
        logp = -0.5 * np.sum(z * z / v + np.log(v) + _LOG_2PI, axis=1)
        xh = self.mean + (z * (a[:, None] * self.lam / v)) @ self.U.T
        return logp, xh

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((n, self.dim)) * np.sqrt(self.lam)
        return self.mean + z @ self.U.T


class LineNormalData(GaussianData):
    """The bounded-target paper's line-normal data in 2D: X1 ~ N(0, scale^2), X2 = 0."""

    def __init__(self, schedule: Schedule, scale: float = 1.0):
        super().__init__(np.zeros(2), np.diag([float(scale) ** 2, 0.0]), schedule)


def _bessel_i01_scaled(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(e^-z I0(z), e^-z I1(z)) for z >= 0: the power series for z <= 30, the asymptotic
    expansion (Abramowitz & Stegun 9.7.1, 12 terms) above; about 1e-14 relative."""
    z = np.asarray(z, dtype=np.float64)
    i0, i1 = np.empty_like(z), np.empty_like(z)
    small = z <= 30.0
    zs = z[small]
    q = (zs / 2.0) ** 2
    t0, t1 = np.ones_like(zs), zs / 2.0
    s0, s1 = t0.copy(), t1.copy()
    for k in range(1, 90):
        t0 = t0 * q / (k * k)
        t1 = t1 * q / (k * (k + 1))
        s0, s1 = s0 + t0, s1 + t1
    i0[small], i1[small] = s0 * np.exp(-zs), s1 * np.exp(-zs)
    zl = z[~small]
    for out, nu in ((i0, 0.0), (i1, 1.0)):
        mu, term, acc = 4.0 * nu * nu, np.ones_like(zl), np.ones_like(zl)
        for k in range(1, 12):
            term = -term * (mu - (2 * k - 1) ** 2) / (k * 8.0 * zl)
            acc = acc + term
        out[~small] = acc / np.sqrt(2 * np.pi * zl)
    return i0, i1


class CircleData(ContinuousData):
    """The uniform distribution on the circle of radius r about the origin in R^2. With
    rho = |x| and z = alpha r rho / sigma^2:
    p_t(x) = exp(-(rho^2 + alpha^2 r^2) / (2 sigma^2)) I0(z) / (2 pi sigma^2) and
    E[X_0 | x] = r (I1(z) / I0(z)) x / rho (Pidstrigach, Sec. 5)."""

    def __init__(self, radius: float, schedule: Schedule):
        if not (np.isfinite(radius) and radius > 0):
            raise ValueError(f"radius must be a finite number > 0, got {radius!r}")
        super().__init__(schedule, 2)
        self.radius = float(radius)

    def __repr__(self) -> str:
        return f"CircleData(radius={self.radius}, schedule={self.schedule!r})"

    def _eval(self, x, a, s2):
        r = self.radius
        rho = np.sqrt(np.sum(x * x, axis=1))
        z = a * r * rho / s2
        i0, i1 = _bessel_i01_scaled(z)
        logp = -((rho - a * r) ** 2) / (2 * s2) + np.log(i0) - np.log(2 * np.pi * s2)
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = np.where(rho[:, None] > 0, x / rho[:, None], 0.0)
        return logp, r * (i1 / i0)[:, None] * unit

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        th = rng.uniform(0, 2 * np.pi, n)
        return self.radius * np.stack([np.cos(th), np.sin(th)], axis=1)
