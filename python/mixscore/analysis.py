"""Curves over time of posterior statistics averaged over x ~ p_t^N (SCIENCE.md section 4).

``dsm_floor``       E_x[tr C(x, t)]: the DSM loss floor of the generalization-through-variance
                    paper (Eq. 24: J1 = J0 + 1/2 E_{t,x}[lambda_t tr C]).
``collapse_curve``  mean posterior entropy, effective number of points and max weight against
                    t, and the collapse time below which the exact dynamics copy the training
                    set (Biroli, Bonnaire, de Bortoli and Mezard, 2024).

Queries are x = alpha(t) X_m + s(t) z with m drawn with the training weights, z standard normal
and s^2 the model's mixture variance (sigma^2, or sigma^2 + alpha^2 h^2 with Smoothing(h)),
from counter-based Philox streams of ``seed``; the same (m, z) are used at every time (common
random numbers: the curves are smooth in t), so sample i's draw does not depend on n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _core
from ._validation import as_times
from .regularizers import Smoothing, check_unsmoothed

__all__ = ["dsm_floor", "collapse_curve", "DsmFloor", "CollapseCurve"]


def _times(model, times) -> np.ndarray:
    ts = as_times(times, model.schedule.T, name="times")
    if ts.ndim != 1 or ts.size < 1:
        raise ValueError(f"times must be a 1-d array of times, got shape {ts.shape}")
    return np.sort(ts)


def _queries(model, n: int, seed: int):
    """Training indices (n,) and standard normals (n, D) of the Philox streams of ``seed``."""
    from .sampling import _as_seed, _count

    n, seed = _count(n), _as_seed(seed)
    ids = np.arange(n, dtype=np.int64)
    w = np.ones(model.n) if model.weights is None else model.weights
    u = _core.philox_uniforms(seed, ids, _core.STEP_START_INDEX)
    idx = np.minimum(np.searchsorted(np.cumsum(w / w.sum()), u, side="right"), model.n - 1)
    return idx, _core.philox_normals(seed, ids, _core.STEP_START_NOISE, model.dim)


def _over_time(model, times, n, seed, include):
    ts = _times(model, times)
    idx, z = _queries(model, n, seed)
    X = np.asarray(model.train, np.float64)[idx]
    rows = {k: np.empty((ts.size, z.shape[0])) for k in include}
    # the model's p_t: a Smoothing(h) widens each component by alpha^2 h^2 (h_m per point)
    h2 = sum(np.asarray(r.bandwidth)[idx] ** 2 if r.per_point else r.bandwidth ** 2
             for r in model.regularizers if isinstance(r, Smoothing))
    for k, t in enumerate(ts):
        alpha = float(model.schedule.alpha(t))
        s = np.sqrt(float(model.schedule.sigma2(t)) + alpha * alpha * h2)
        x = alpha * X + np.broadcast_to(s, idx.shape)[:, None] * z
        st = model.stats(x.astype(model.dtype), float(t), include=include)
        for name in include:
            rows[name][k] = getattr(st, name)
    return ts, rows


@dataclass
class DsmFloor:
    """times (ascending), mean E_x[tr C] and its Monte Carlo standard error, n queries."""

    times: np.ndarray
    mean: np.ndarray
    stderr: np.ndarray
    n: int


def dsm_floor(model, times, n: int = 1000, seed: int = 0) -> DsmFloor:
    """E_x[tr C(x, t)] over x ~ p_t^N at each time (generalization-through-variance paper,
    Eq. 24), by Monte Carlo with n >= 2 noised training points (a model without Smoothing:
    the floor is that of the training points)."""
    check_unsmoothed(model, "dsm_floor")
    if isinstance(n, int | np.integer) and not isinstance(n, bool) and n < 2:
        raise ValueError(f"n must be an int >= 2 (the standard error needs two queries), got {n}")
    ts, rows = _over_time(model, times, n, seed, ("trace_cov",))
    tr = rows["trace_cov"]
    return DsmFloor(ts, tr.mean(axis=1), tr.std(axis=1, ddof=1) / np.sqrt(tr.shape[1]), tr.shape[1])


@dataclass
class CollapseCurve:
    """Means over x ~ p_t^N against ``times`` (ascending): posterior ``entropy`` (nats),
    ``n_eff`` (1 / sum w^2), ``max_weight``; ``collapse_time``: the largest t where the mean
    entropy is below ``threshold`` (log-linear interpolation towards the next grid time; nan
    if it is above at every time)."""

    times: np.ndarray
    entropy: np.ndarray
    n_eff: np.ndarray
    max_weight: np.ndarray
    threshold: float
    collapse_time: float
    n: int

    def plot(self, ax=None):
        """Mean entropy (left axis, with the threshold and collapse time) and effective number
        of points (right axis) against t on a log axis; returns the matplotlib Axes."""
        from .plotting import _plt

        plt = _plt()
        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 3.5))
        ax.semilogx(self.times, self.entropy, color="#4878a8", label="mean entropy (nats)")
        ax.axhline(self.threshold, color="#888888", lw=1, ls=":")
        if np.isfinite(self.collapse_time):
            ax.axvline(
                self.collapse_time,
                color="#c03030",
                lw=1.5,
                label=f"collapse t = {self.collapse_time:.3g}",
            )
        ax.set_xlabel("t")
        ax.set_ylabel("posterior entropy (nats)")
        ax2 = ax.twinx()
        ax2.semilogx(self.times, self.n_eff, color="#e08030", ls="--", label="mean n_eff")
        ax2.set_ylabel("effective number of points")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left", fontsize=8)
        return ax


def _crossing(ts: np.ndarray, h: np.ndarray, threshold: float) -> float:
    """The largest t with h(t) < threshold, interpolated in log t towards the next grid time
    (where h >= threshold); nan if h >= threshold at every time."""
    below = np.flatnonzero(h < threshold)
    if below.size == 0:
        return float("nan")
    j = int(below[-1])
    if j == ts.size - 1:
        return float(ts[-1])
    f = (threshold - h[j]) / (h[j + 1] - h[j])
    return float(np.exp(np.log(ts[j]) + f * (np.log(ts[j + 1]) - np.log(ts[j]))))


def collapse_curve(
    model, times, n: int = 1000, seed: int = 0, threshold: float = float(np.log(2.0))
) -> CollapseCurve:
    """Mean posterior entropy, n_eff and max weight over x ~ p_t^N against t, and the
    collapse time where the mean entropy crosses ``threshold`` (default log 2 nats: fewer
    than about two training points share the posterior)."""
    if not (np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a finite number > 0 (nats), got {threshold!r}")
    ts, rows = _over_time(model, times, n, seed, ("entropy", "n_eff", "max_weight"))
    h = rows["entropy"].mean(axis=1)
    tc = _crossing(ts, h, float(threshold))
    return CollapseCurve(
        ts,
        h,
        rows["n_eff"].mean(axis=1),
        rows["max_weight"].mean(axis=1),
        float(threshold),
        tc,
        rows["entropy"].shape[1],
    )
