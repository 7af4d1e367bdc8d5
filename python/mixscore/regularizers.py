"""Regularized, smoothed and perturbed empirical scores (SCIENCE.md section 4): finalizer
policies applied to the statistics of the one streaming pass.

Pass one object or a list to ``EmpiricalScore(X, schedule, regularizer=...)``. Whatever the
order of the list, the policies compose in one fixed order (at most one of each kind)::

    s = min(1, K(x) / c_eb) * (alpha xhat0 - x) / (sigma^2 + alpha^2 h^2 + c_tik) + e(x, t)

where xhat0 is the posterior mean of the (smoothed) mixture. Each policy:

``Smoothing(h)``      data convolved with N(0, h^2 I) (bounded-target paper Thm 3.7;
                      Pidstrigach Corollary 1): the same mixture with sigma^2 replaced by
                      sigma^2 + alpha^2 h^2, so weights, log-density and posterior statistics
                      are those of the smoothed mixture.
``Tikhonov(c)``       memorization paper Eq. 5.7: s_c = (alpha xhat0 - x) / (sigma^2 + c);
                      weights unchanged; bounded as t -> 0.
``EmpiricalBayes(c)`` memorization paper Eq. 5.12 (``units="kernel_sum"``, the paper's code):
                      s * min(1, K(x) / c) with K(x) = sum_n pi_n exp(-|x - alpha X_n|^2 /
                      (2 sigma^2)) the UNNORMALIZED kernel sum (pi_n = 1 without weights; with
                      integer weights K equals the sum over the repeated rows), evaluated in log
                      space, log K = LSE_n(l_n). ``units="density"`` is Eq. 5.11,
                      s = grad p / max(p, c), i.e. c compared with the normalized density
                      p_t^N(x) = K(x) / (sum_n pi_n (2 pi sigma^2)^{D/2}) (per unit volume of
                      R^D).
``Perturbation(e)``   Pidstrigach: s + e(x, t), e a constant (D,) vector or a callable.

With a regularizer the model's ``score`` is the regularized score, ``eps = -sigma s`` and
``denoised`` is the x0-prediction of that score, (x + sigma^2 s) / alpha (Tweedie's formula
read backwards), so every sampler, which works in denoiser form, integrates the regularized
dynamics. ``logpdf``, ``tau2``, ``max_weight``, ``argmax``, ``n_eff``, ``trace_cov`` and
``entropy`` stay the statistics of the (smoothed) mixture and its posterior.

The regularizers act in Python on the float64 accumulators of the pass (``model.partial``),
on every backend. The fused C++ sampler applies them too (``mixscore.sampling.fold``): the
*linear* ones (``Smoothing``, ``Tikhonov``: the regularized denoiser is p x + q xhat0 with p, q
depending on t only) folded into its per-step coefficients, ``EmpiricalBayes`` and a constant
``Perturbation`` per sample after each denoiser call; with a callable perturbation or per-point
Smoothing bandwidths ``ms.sample`` runs the Python loop.

A model whose score stays bounded as sigma -> 0 (``Tikhonov(c > 0)``, ``Smoothing(h > 0)``)
may be evaluated at t = 0 (sigma = 0: the posterior is the hard assignment to the nearest
training point), so its statistics and samplers accept grids that end at t = 0.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .backends import _xp
from .partial import PosteriorPartial, inv_two_sigma2

__all__ = [
    "Regularizer",
    "Tikhonov",
    "EmpiricalBayes",
    "Smoothing",
    "Perturbation",
    "as_regularizers",
]

_LOG_2PI = 1.8378770664093453


def _check_level(value, name: str, owner: str, *, positive: bool = False):
    """A non-negative finite number, or a callable (checked when evaluated)."""
    if callable(value):
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{owner}: {name} must be a number or a callable {name}(t), got {type(value).__name__}"
        )
    v = float(value)
    if not np.isfinite(v) or v < 0 or (positive and v == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{owner}: {name} must be a finite number {bound}, got {value!r}")
    return v


def _level_at(value, t, m: int, name: str, owner: str) -> np.ndarray:
    """The level (M,) at the per-query times t (evaluating a callable)."""
    if not callable(value):
        return np.full(m, value)
    if t is None:
        raise ValueError(
            f"{owner} with a callable {name}(t) needs the time: use stats(x, t) "
            "(stats_at_noise has no time unless t= is given)"
        )
    arr = np.asarray(value(t), dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(m, float(arr))
    if arr.shape != (m,):
        raise ValueError(
            f"{owner}: {name}(t) must return a scalar or shape ({m},) for {m} "
            f"times, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr) & (arr >= 0)):
        raise ValueError(
            f"{owner}: {name}(t) must be finite and >= 0, got "
            f"{arr[~(np.isfinite(arr) & (arr >= 0))][0]!r}"
        )
    return arr


@dataclass
class Context:
    """What a policy reads and changes while the statistics are finalized (float64).

    x (M, D), t (M,) or None, alpha (M,), sigma2 (M,) of the schedule, mix_sigma2 (M,) the
    mixture's variance, part the pass's partial state at mix_sigma2, log_weight_sum; the score
    is ``resid * exp(log_factor) / denom + shift`` with resid = alpha xhat0 - x. The per-query
    numbers are host NumPy arrays; x and shift are arrays of the partial's namespace (NumPy,
    or torch / CuPy on the device of a model kept there: ``part.place`` moves host vectors)."""

    x: np.ndarray
    t: np.ndarray | None
    alpha: np.ndarray
    sigma2: np.ndarray
    mix_sigma2: np.ndarray
    part: PosteriorPartial | None = None
    denom: np.ndarray | None = None
    log_factor: np.ndarray | None = None
    shift: np.ndarray | None = None

    @property
    def xp(self):
        """The namespace of the vectors (NumPy without a partial state)."""
        return np if self.part is None else self.part.xp

    def place(self, a):
        """``a`` as a float64 array of the vectors' namespace and device."""
        return np.asarray(a, np.float64) if self.part is None else self.part.place(a)

    def log_kernel_sum(self) -> np.ndarray:
        """log K(x) = LSE_n(log pi_n - |x - alpha X_n|^2 / (2 sigma_mix^2)), from the pass."""
        p = self.part
        return -p.lam_min * inv_two_sigma2(self.mix_sigma2) + np.log(p.s0)


class Regularizer:
    """Base class of the policies. ``rank`` fixes the composition order."""

    rank = 0
    bounded = False  # the score stays bounded as sigma -> 0 (grids may end at t = 0)
    # only the mixture variance and the denominator change (no x-dependent factor or shift):
    # the regularized denoiser is p(t) x + q(t) xhat0, foldable into a sampler's coefficients
    linear = False

    def bind(self, model) -> None:
        """Check the policy against the model (dimension, number of points)."""

    def mixture_sigma2(self, ctx: Context) -> np.ndarray:
        return ctx.mix_sigma2

    def subset(self, index) -> Regularizer:
        """The policy for the training points ``index`` (a label's sub-model)."""
        return self

    def apply(self, ctx: Context) -> None:
        """Change ctx.denom / ctx.log_factor / ctx.shift."""


class Smoothing(Regularizer):
    """Data convolved with N(0, h^2 I): the mixture at variance sigma^2 + alpha^2 h^2
    (bounded-target paper Thm 3.7; Pidstrigach Corollary 1). ``bandwidth`` h >= 0: one global
    number, or one per training point (shape (N,): component n has variance sigma^2 +
    alpha^2 h_n^2; its statistics come from a float64 pass, ``mixscore.smoothing``)."""

    rank = 0
    linear = True

    def __init__(self, bandwidth: float | np.ndarray):
        if callable(bandwidth):
            raise TypeError("Smoothing: bandwidth must be a number or one number per point")
        if np.ndim(bandwidth) == 0:
            self.bandwidth = _check_level(bandwidth, "bandwidth", "Smoothing")
            return
        h = np.asarray(bandwidth)
        if h.ndim != 1 or h.dtype.kind not in "fiu" or not np.all(np.isfinite(h) & (h >= 0)):
            raise ValueError(
                "Smoothing: bandwidth must be a number >= 0 or a 1-d array of finite numbers "
                f">= 0, one per training point; got shape {h.shape}, dtype {h.dtype}"
            )
        self.bandwidth = h.astype(np.float64)
        self.linear = False  # per-point: the fused loop cannot fold it (smoothing.py)

    def subset(self, index) -> Smoothing:
        return Smoothing(self.bandwidth[index]) if self.per_point else self

    @property
    def per_point(self) -> bool:
        """One bandwidth per training point (statistics from ``mixscore.smoothing``)."""
        return np.ndim(self.bandwidth) == 1

    def bind(self, model) -> None:
        if self.per_point and self.bandwidth.shape != (model.n,):
            raise ValueError(
                f"Smoothing: bandwidth must have one value per training point, shape "
                f"({model.n},), got shape {self.bandwidth.shape}"
            )

    @property
    def bounded(self) -> bool:
        return bool(np.all(self.bandwidth > 0))

    def __repr__(self) -> str:
        if self.per_point:
            return f"Smoothing(bandwidth=<{self.bandwidth.size} per-point values>)"
        return f"Smoothing(bandwidth={self.bandwidth!r})"

    def mixture_sigma2(self, ctx: Context) -> np.ndarray:
        if self.per_point:
            raise ValueError(
                "Smoothing with one bandwidth per point has no single mixture variance: the "
                "posterior operations (draws, C v, covariance noise) and partial states are "
                "not defined for it; its statistics come from mixscore.smoothing"
            )
        return ctx.mix_sigma2 + (ctx.alpha * self.bandwidth) ** 2


class Tikhonov(Regularizer):
    """s_c = (alpha xhat0 - x) / (sigma^2 + c) (memorization paper Eq. 5.7, Gamma = c/sigma^2),
    c >= 0 a number or a callable c(t); weights unchanged. Bounded as t -> 0 when c > 0; in
    effect like stopping early where sigma^2(t) = c."""

    rank = 1
    linear = True

    def __init__(self, c: float | Callable):
        self.c = _check_level(c, "c", "Tikhonov")

    @property
    def bounded(self) -> bool:
        return callable(self.c) or self.c > 0

    def __repr__(self) -> str:
        return f"Tikhonov(c={self.c!r})"

    def apply(self, ctx: Context) -> None:
        ctx.denom = ctx.denom + _level_at(self.c, ctx.t, ctx.x.shape[0], "c", "Tikhonov")


class EmpiricalBayes(Regularizer):
    """s_eb = s * min(1, K(x) / c) (memorization paper Eq. 5.12; ``units="kernel_sum"``, K the
    unnormalized kernel sum) or s * min(1, p_t^N(x) / c) (Eq. 5.11; ``units="density"``, the
    normalized density per unit volume). c >= 0 (0: the plain score), a number or c(t)."""

    rank = 2
    UNITS = ("kernel_sum", "density")

    def __init__(self, c: float | Callable, units: str = "kernel_sum"):
        self.c = _check_level(c, "c", "EmpiricalBayes")
        if units not in self.UNITS:
            raise ValueError(f"EmpiricalBayes: units must be one of {self.UNITS}, got {units!r}")
        self.units = units

    def __repr__(self) -> str:
        return f"EmpiricalBayes(c={self.c!r}, units={self.units!r})"

    def apply(self, ctx: Context) -> None:
        c = _level_at(self.c, ctx.t, ctx.x.shape[0], "c", "EmpiricalBayes")
        log_k = ctx.log_kernel_sum()
        if self.units == "density":
            d = ctx.x.shape[1]
            log_k = log_k - ctx.part.log_weight_sum - 0.5 * d * (_LOG_2PI + np.log(ctx.mix_sigma2))
        with np.errstate(divide="ignore"):
            ctx.log_factor = ctx.log_factor + np.minimum(0.0, log_k - np.log(c))


class Perturbation(Regularizer):
    """s + e(x, t) (Pidstrigach): ``e`` a constant (D,) vector or a callable e(x, t) returning
    (M, D) for x of shape (M, D) and t of shape (M,)."""

    rank = 3

    def __init__(self, e):
        if callable(e):
            self.e = e
        else:
            arr = np.asarray(e)
            if arr.dtype.kind not in "fiu" or arr.ndim != 1 or not np.all(np.isfinite(arr)):
                raise ValueError(
                    f"Perturbation: e must be a finite 1-d vector (D,) or a "
                    f"callable e(x, t), got shape {arr.shape}, dtype {arr.dtype}"
                )
            self.e = arr.astype(np.float64)

    def __repr__(self) -> str:
        return f"Perturbation(e={self.e!r})"

    def bind(self, model) -> None:
        if not callable(self.e) and self.e.shape != (model.dim,):
            raise ValueError(
                f"Perturbation: e must have shape ({model.dim},) (the data "
                f"dimension), got shape {self.e.shape}"
            )

    def apply(self, ctx: Context) -> None:
        m, d = ctx.x.shape
        if not callable(self.e):
            ctx.shift = ctx.shift + ctx.place(self.e)
            return
        if ctx.t is None:
            raise ValueError(
                "Perturbation with a callable e(x, t) needs the time: use "
                "stats(x, t) (stats_at_noise has no time unless t= is given)"
            )
        out = self.e(ctx.x, ctx.t)  # x in the model's library (NumPy, or torch / CuPy)
        shape = tuple(np.shape(out))
        if shape != (m, d):
            raise ValueError(
                f"Perturbation: e(x, t) must return shape ({m}, {d}) (the shape "
                f"of x), got shape {shape}"
            )
        out, xp = ctx.place(out), ctx.xp
        if not bool(xp.all(xp.isfinite(out))):
            raise ValueError("Perturbation: e(x, t) returned NaN or Inf")
        ctx.shift = ctx.shift + out


def check_unsmoothed(model, what: str) -> None:
    """Refuse a model whose Smoothing blurs the data where ``what`` (the DSM loss floor) is
    the posterior variance of the training points themselves."""
    if any(isinstance(r, Smoothing) for r in model.regularizers):
        raise ValueError(f"{what}: the model's Smoothing blurs the data, whose floor is not the "
                         f"posterior variance of the training points; use a model without "
                         f"Smoothing (Tikhonov, EmpiricalBayes and Perturbation leave it)")


def as_regularizers(regularizer, model) -> tuple[Regularizer, ...]:
    """None, one policy or a sequence of them -> a tuple in composition order (checked)."""
    if regularizer is None:
        return ()
    items = list(regularizer) if isinstance(regularizer, Sequence) else [regularizer]
    for r in items:
        if not isinstance(r, Regularizer):
            raise TypeError(
                "regularizer must be a mixscore.regularizers object (Tikhonov, "
                "EmpiricalBayes, Smoothing, Perturbation) or a list of them, got "
                f"{type(r).__name__}"
            )
    kinds = [type(r).__name__ for r in items]
    dup = sorted({k for k in kinds if kinds.count(k) > 1})
    if dup:
        raise ValueError(f"regularizer: at most one of each kind, got {dup} more than once")
    items.sort(key=lambda r: r.rank)
    for r in items:
        r.bind(model)
    if "EmpiricalBayes" in kinds and any(getattr(r, "per_point", False) for r in items):
        raise ValueError("regularizer: EmpiricalBayes does not compose with per-point "
                         "Smoothing bandwidths (its kernel sum assumes one variance)")
    return tuple(items)


SCORE_STATS = ("denoised", "score", "eps")


def mixture_context(
    regs: tuple[Regularizer, ...], x, t, alpha: np.ndarray, sigma2: np.ndarray
) -> Context:
    """The context with the mixture's variance (Smoothing changes it), before the pass (x is
    kept as given; ``regularized_stats`` places it with the partial)."""
    ctx = Context(x=x, t=t, alpha=alpha, sigma2=sigma2, mix_sigma2=sigma2)
    for r in regs:
        ctx.mix_sigma2 = r.mixture_sigma2(ctx)
    return ctx


def regularized_stats(
    regs: tuple[Regularizer, ...], partial_at, x, t, alpha, sigma2, want: set, dtype
) -> tuple[dict, PosteriorPartial]:
    """The statistics in ``want`` under the policies ``regs``.

    ``partial_at(alpha, sigma2)`` runs the pass (the model's backend) and returns its partial
    state: a ``PosteriorPartial``, or for a model kept on a device the array-API backend's
    ``DevicePartial`` (same fields; its vectors and these outputs stay on the device).
    Returns (outputs, the partial state used)."""
    m = x.shape[0]
    ctx = mixture_context(regs, x, t, alpha, sigma2)
    ctx.part = p = partial_at(alpha, ctx.mix_sigma2)
    if not regs:
        return p.finalize(want), p
    out = p.finalize(want - set(SCORE_STATS))
    if not want & set(SCORE_STATS):
        return out, p
    xp = p.xp
    ctx.x = p.place(x)
    ctx.denom, ctx.log_factor = ctx.mix_sigma2.copy(), np.zeros(m)
    ctx.shift = xp.zeros_like(ctx.x)
    for r in regs:
        r.apply(ctx)
    if not np.all(ctx.denom > 0):
        raise ValueError("the regularized score is unbounded at sigma = 0 here: the "
                         "regularizers' levels are 0 there (Tikhonov c(t) = 0 at t = 0?)")
    with np.errstate(divide="ignore", over="ignore"):
        scale = np.exp(ctx.log_factor - np.log(ctx.denom))  # 0 where the factor is 0
        a, s2 = (p.place(v)[:, None] for v in (alpha, sigma2))
        score = (a * p.mean() - ctx.x) * p.place(scale)[:, None] + ctx.shift
        vectors = {
            "score": score,
            "eps": -xp.sqrt(s2) * score,
            "denoised": (ctx.x + s2 * score) / a,
        }
    for name in SCORE_STATS:
        if name in want:
            out[name] = _xp.astype(xp, vectors[name], dtype)
    return out, p
