"""Partial states: what one part (shard) of a training set contributes to a query, merged exactly.

The posterior w_n(x, t) = softmax_n(l_n), l_n = log pi_n - |x - alpha X_n|^2 / (2 sigma^2)
(SCIENCE.md section 1), and every statistic of it, is a function of a few accumulators that
disjoint parts of the training set contribute additively once they are put on a common scale
(the online log-sum-exp of flash attention). With the penalized squared distance

    lam_n = |x - alpha X_n|^2 - 2 sigma^2 log pi_n          (l_n = -lam_n / (2 sigma^2))

and relative weights w_n = exp(-(lam_n - lam_min) / (2 sigma^2)) (the largest is 1), one part
keeps per query

    lam_min   min_n lam_n                     centre   c = X_best (best = argmin, global index)
    s0        sum_n w_n                       sum_w2   sum_n w_n^2
    s1        sum_n w_n (X_n - c)             s2       sum_n w_n |X_n - c|^2
    log_weight_sum  log sum_n pi_n  (log N for equal weights: the normalization of p_t^N)

Sums about the centre, not about 0: the posterior variance is then s2 / s0 - |s1 / s0|^2
without catastrophic cancellation (SCIENCE.md section 6, item 3).

``merge`` combines any number of partial states of the same queries in the order given
(rescaling each to the common minimum and moving its sums to the common centre), and
``PosteriorPartial.finalize`` is the one place where accumulators become outputs. Guarantees:
merging the parts of any split of a training set gives the single-call statistics to about
1e-12 relative in float64 (each engine call drops the entries more than its cutoff below its own
running maximum, so the kept sets can differ by weights below e^-cutoff); the argmax is identical
(ties go to the lowest global index); the same parts merged in the same order give the same bits.

Nearest neighbours merge the same way: ``NeighborsPartial`` holds each query's k smallest
exact squared distances with global indices, and the merged top-k under the order
(squared distance, index) is the single-call top-k bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

POSTERIOR_FIELDS = ("lam_min", "s0", "sum_w2", "s2", "s1", "centre")
_LOG_2PI = 1.8378770664093453


def inv_two_sigma2(sigma2: np.ndarray) -> np.ndarray:
    """1 / (2 sigma^2), capped at 1e300 (sigma -> 0: a hard assignment, never inf * 0)."""
    with np.errstate(over="ignore", divide="ignore"):
        return np.minimum(0.5 / sigma2, 1e300)


def _check_same_queries(parts, what: str) -> None:
    """Partial states merge only for the same queries at the same noise levels."""
    if not parts:
        raise ValueError(f"merge needs at least one {what}, got an empty sequence")
    first = parts[0]
    for j, p in enumerate(parts[1:], start=1):
        if type(p) is not type(first):
            raise TypeError(f"merge: partial {j} is a {type(p).__name__}, partial 0 a "
                            f"{type(first).__name__}; merge partial states of one kind")
        if p.x.shape != first.x.shape:
            raise ValueError(f"merge: partial {j} has queries of shape {p.x.shape}, partial 0 "
                             f"{first.x.shape}; partials must be of the same queries")
        if p.dtype != first.dtype:
            raise ValueError(f"merge: partial {j} was computed in {p.dtype}, partial 0 in "
                             f"{first.dtype}; use one compute dtype for every shard")
        if p.x is not first.x and not np.array_equal(p.x, first.x):
            raise ValueError(f"merge: partial {j} is of different queries than partial 0 "
                             "(same shape, different values)")
        for name in ("alpha", "sigma2"):
            a, b = getattr(p, name), getattr(first, name)
            if a is not None and not np.array_equal(a, b):
                raise ValueError(f"merge: partial {j} has different {name} (noise levels) than "
                                 "partial 0; partials must be of the same times")


@dataclass(frozen=True, eq=False)
class PosteriorPartial:
    """One training-set part's contribution to the posterior statistics of M queries.

    Fields are as in the module docstring, float64, shapes (M,) or (M, D); ``best`` holds
    global indices (-1 where the part is empty). ``x``, ``alpha``, ``sigma2`` identify the
    queries and noise levels (checked by ``merge``); ``dtype`` is the model's compute dtype,
    ``n`` the number of training points contributing.
    """

    x: np.ndarray
    alpha: np.ndarray
    sigma2: np.ndarray
    lam_min: np.ndarray
    s0: np.ndarray
    sum_w2: np.ndarray
    s2: np.ndarray
    s1: np.ndarray
    centre: np.ndarray
    best: np.ndarray
    log_weight_sum: float
    n: int
    dtype: np.dtype
    # the namespace of the vectors (the device partial of backends/arrayapi.py has another)
    xp: ClassVar = np

    def __repr__(self) -> str:
        return (f"PosteriorPartial(M={self.x.shape[0]}, D={self.x.shape[1]}, n={self.n}, "
                f"dtype={np.dtype(self.dtype)}, log_weight_sum={self.log_weight_sum:.6g})")

    @classmethod
    def empty(cls, x: np.ndarray, alpha: np.ndarray, sigma2: np.ndarray,
              dtype) -> PosteriorPartial:
        """The contribution of an empty part: the identity of ``merge``."""
        m, d = x.shape
        return cls(x=x, alpha=alpha, sigma2=sigma2, lam_min=np.full(m, np.inf),
                   s0=np.zeros(m), sum_w2=np.zeros(m), s2=np.zeros(m), s1=np.zeros((m, d)),
                   centre=np.zeros((m, d)), best=np.full(m, -1, np.int64),
                   log_weight_sum=-np.inf, n=0, dtype=np.dtype(dtype))

    @classmethod
    def from_arrays(cls, arrays: dict, *, x, alpha, sigma2, best, log_weight_sum: float,
                    n: int, dtype) -> PosteriorPartial:
        """From a backend's accumulators (the keys of ``POSTERIOR_FIELDS``)."""
        acc = {k: np.asarray(arrays[k], dtype=np.float64) for k in POSTERIOR_FIELDS}
        return cls(x=x, alpha=alpha, sigma2=sigma2, best=np.asarray(best, np.int64),
                   log_weight_sum=float(log_weight_sum), n=int(n), dtype=np.dtype(dtype),
                   **acc)

    @staticmethod
    def place(a) -> np.ndarray:
        """``a`` as a float64 array of this partial's namespace (NumPy)."""
        return np.asarray(a, dtype=np.float64)

    def mean(self) -> np.ndarray:
        """The float64 posterior mean xhat0 (M, D)."""
        return self.centre + self.s1 / self.s0[:, None]

    def merged_with(self, other: PosteriorPartial) -> PosteriorPartial:
        """self and other on the common scale: the lower lam_min (then the lower global index)
        gives the new centre; each part's sums are rescaled to it and moved to that centre."""
        inv = inv_two_sigma2(self.sigma2)
        lam = np.minimum(self.lam_min, other.lam_min)
        take_other = (other.lam_min < self.lam_min) | (
            (other.lam_min == self.lam_min) & (other.best >= 0)
            & ((self.best < 0) | (other.best < self.best)))
        centre = np.where(take_other[:, None], other.centre, self.centre)
        s0 = np.zeros_like(self.s0)
        sum_w2, s2, s1 = np.zeros_like(s0), np.zeros_like(s0), np.zeros_like(self.s1)
        for p in (self, other):
            has = p.s0 > 0  # an empty part (lam_min = inf) contributes nothing, never inf - inf
            with np.errstate(invalid="ignore"):
                f = np.where(has, np.exp(-np.where(has, p.lam_min - lam, 0.0) * inv), 0.0)
            delta = p.centre - centre
            dot = np.einsum("md,md->m", delta, p.s1)
            dd = np.einsum("md,md->m", delta, delta)
            s0 = s0 + f * p.s0
            sum_w2 = sum_w2 + f * f * p.sum_w2
            s2 = s2 + f * (p.s2 + 2.0 * dot + p.s0 * dd)
            s1 = s1 + f[:, None] * (p.s1 + p.s0[:, None] * delta)
        return PosteriorPartial(
            x=self.x, alpha=self.alpha, sigma2=self.sigma2, lam_min=lam, s0=s0, sum_w2=sum_w2,
            s2=s2, s1=s1, centre=centre, best=np.where(take_other, other.best, self.best),
            log_weight_sum=float(np.logaddexp(self.log_weight_sum, other.log_weight_sum)),
            n=self.n + other.n, dtype=self.dtype)

    def finalize(self, include=None) -> dict:
        """The statistics (the names of ``backends.STAT_NAMES`` in ``include``, default all) as
        a dict of arrays: the one place where accumulators become outputs (SCIENCE.md
        section 1: logpdf, denoiser, score, eps, tau2, max weight, argmax, n_eff)."""
        from .backends import STAT_NAMES, VECTOR_STATS

        want = set(STAT_NAMES if include is None else include)
        if self.n == 0 or np.any(self.s0 <= 0):
            raise ValueError("cannot finalize a partial state without training points "
                             f"(n = {self.n}); merge it with the other shards first")
        s0, sigma2, x = self.s0, self.sigma2, self.x.astype(np.float64)
        mean_offset = self.s1 / s0[:, None]
        denoised = self.centre + mean_offset
        resid = self.alpha[:, None] * denoised - x
        out = {}
        # score ~ 1/sigma^2 may overflow float32 (inf is right); sigma = 0 (a bounded
        # regularizer's t = 0) gives inf too, replaced by the regularized score
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            vectors = {"denoised": denoised, "score": resid / sigma2[:, None],
                       "eps": -resid / np.sqrt(sigma2)[:, None]}
            for name in VECTOR_STATS:
                if name in want:
                    out[name] = vectors[name].astype(self.dtype)
        if "logpdf" in want:
            d = x.shape[1]
            with np.errstate(divide="ignore"):
                logpdf = (-self.lam_min * inv_two_sigma2(sigma2) + np.log(s0)
                          - self.log_weight_sum - 0.5 * d * (_LOG_2PI + np.log(sigma2)))
            # sigma = 0: the mixture is atoms at the training points (infinite density there)
            out["logpdf"] = np.where(sigma2 > 0, logpdf,
                                     np.where(self.lam_min <= 0, np.inf, -np.inf))
        if "tau2" in want:
            m2 = np.einsum("md,md->m", mean_offset, mean_offset)
            out["tau2"] = np.maximum(0.0, self.s2 / s0 - m2)
        if "max_weight" in want:
            out["max_weight"] = 1.0 / s0
        if "argmax" in want:
            out["argmax"] = self.best.copy()
        if "n_eff" in want:
            out["n_eff"] = s0 * s0 / self.sum_w2
        return out


@dataclass(frozen=True, eq=False)
class NeighborsPartial:
    """One training-set part's k nearest points of M queries: exact float64 squared distances
    (M, k') and global indices (M, k'), k' = min(k, n), ascending by (distance, index)."""

    x: np.ndarray
    sq_distances: np.ndarray
    indices: np.ndarray
    k: int
    n: int
    dtype: np.dtype
    alpha = None  # nearest search has no noise level (keeps _check_same_queries uniform)
    sigma2 = None

    def __repr__(self) -> str:
        return (f"NeighborsPartial(M={self.x.shape[0]}, k={self.k}, n={self.n}, "
                f"columns={self.indices.shape[1]})")

    def merged_with(self, other: NeighborsPartial) -> NeighborsPartial:
        if other.k != self.k:
            raise ValueError(f"merge: partials of k = {self.k} and k = {other.k}; use one k")
        d2 = np.concatenate([self.sq_distances, other.sq_distances], axis=1)
        idx = np.concatenate([self.indices, other.indices], axis=1)
        order = np.lexsort((idx, d2), axis=1)[:, : self.k]  # by d2, then by index
        return NeighborsPartial(x=self.x, sq_distances=np.take_along_axis(d2, order, axis=1),
                                indices=np.take_along_axis(idx, order, axis=1), k=self.k,
                                n=self.n + other.n, dtype=self.dtype)

    def finalize(self):
        """The ``Neighbors`` (distances = sqrt of the exact squared distances)."""
        from .nearest import Neighbors

        if self.indices.shape[1] < self.k:
            raise ValueError(f"cannot finalize: only {self.indices.shape[1]} training points "
                             f"in the merged parts, k = {self.k}")
        return Neighbors(np.sqrt(self.sq_distances), self.indices.copy())


def merge(partials: Sequence[PosteriorPartial] | Sequence[NeighborsPartial]):
    """Merge the partial states of disjoint parts of one training set, in the order given.

    Every part must be of the same queries (and, for posterior statistics, the same noise
    levels and compute dtype); empty parts are allowed. The result is a partial state of the
    union: finalize it with ``.finalize()``. Merging is exact (see the module docstring) and
    deterministic: the same parts in the same order give the same bits.
    """
    parts = list(partials)
    for p in parts:
        if not isinstance(p, (PosteriorPartial, NeighborsPartial)):
            raise TypeError("merge expects PosteriorPartial or NeighborsPartial objects "
                            f"(from model.partial / index.partial), got {type(p).__name__}")
    _check_same_queries(parts, "partial state")
    out = parts[0]
    for p in parts[1:]:
        out = out.merged_with(p)
    return out


__all__ = ["PosteriorPartial", "NeighborsPartial", "merge", "POSTERIOR_FIELDS"]
