"""The exact score of the empirical distribution (SCIENCE.md section 1).

For training points X_0^n with weights pi_n, the data distribution noised to time t is the
Gaussian mixture p_t(x) = sum_n pi_n N(x; alpha X_0^n, sigma^2 I) / sum pi. Every statistic
below comes from the posterior w_n = p(n | x, t) in one streaming pass.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import ArrayLike

from ._validation import (
    as_float_matrix,
    as_plain_array,
    as_weights,
    check_magnitudes,
    check_threads,
    per_query_times,
)
from .backends import STAT_NAMES, _xp, get_backend, keeps_arrays
from .conditional import LabelGroups, by_label, check_labels, take_rows
from .covariance import EXTRA_STATS
from .partial import PosteriorPartial
from .posterior import evaluate, posterior_op
from .regularizers import as_regularizers
from .scales import schedule_warning
from .schedules import Schedule
from .sharded import DaskScoreBackend, as_dask_train, is_sharded


@dataclass
class ScoreStats:
    """Posterior statistics at (x, t); fields that were not requested are None.

    logpdf      log p_t(x)  (natural log, density w.r.t. Lebesgue measure on R^D)
    denoised    posterior mean E[X_0 | x, t] ("x0-prediction")
    score       grad_x log p_t(x) = (alpha denoised - x) / sigma^2
    eps         noise prediction (x - alpha denoised) / sigma = -sigma score
    tau2        posterior variance trace sum_n w_n |X_0^n - denoised|^2
    max_weight  max_n w_n
    argmax      argmax_n w_n (lowest index among exact ties)
    n_eff       effective number of points 1 / sum_n w_n^2
    trace_cov   tr C = alpha^2 tau2 / sigma^4, C the posterior (proxy-score) covariance
    entropy     posterior entropy -sum_n w_n log w_n (nats; only when in ``include``)
    """

    logpdf: np.ndarray | None = None
    denoised: np.ndarray | None = None
    score: np.ndarray | None = None
    eps: np.ndarray | None = None
    tau2: np.ndarray | None = None
    max_weight: np.ndarray | None = None
    argmax: np.ndarray | None = None
    n_eff: np.ndarray | None = None
    trace_cov: np.ndarray | None = None
    entropy: np.ndarray | None = None

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}

    def __repr__(self) -> str:
        parts = [f"{k}={_brief(v)}" for k, v in self.as_dict().items()]
        return f"ScoreStats({', '.join(parts)})"


def _brief(v) -> str:
    """An array as its shape and dtype (a scalar as its value): reprs stay one line."""
    a = v if hasattr(v, "ndim") else np.asarray(v)  # (torch / CuPy arrays stay put)
    return repr(a.item()) if a.ndim == 0 else f"<{a.dtype} array {a.shape}>"


def _wanted(include) -> set:
    if isinstance(include, str):  # one name, not a sequence of letters
        include = (include,)
    names = STAT_NAMES + EXTRA_STATS
    want = set(STAT_NAMES + ("trace_cov",) if include is None else include)
    unknown = want - set(names)
    if unknown:
        raise ValueError(f"include has unknown statistics {sorted(unknown)}; "
                         f"expected a subset of {list(names)}")
    return want


def check_row_offset(row_offset) -> int:
    """A shard's global row offset: an int >= 0, or a clear error."""
    try:
        value = operator.index(row_offset)
    except TypeError:
        raise TypeError(f"row_offset must be an integer, got {row_offset!r}") from None
    if value < 0:
        raise ValueError(f"row_offset must be >= 0 (the shard's first global row), got {value}")
    return value


def _noise(alpha, sigma2, zero_ok: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """alpha, sigma2 checked; sigma2 = 0 (t = 0) only where ``zero_ok``: a model whose score
    stays bounded as sigma -> 0 (Tikhonov(c > 0), Smoothing(h > 0))."""
    alpha = np.ascontiguousarray(alpha, dtype=np.float64)
    sigma2 = np.ascontiguousarray(sigma2, dtype=np.float64)
    for name, v, ok in (("alpha", alpha, np.isfinite(alpha)),
                        ("sigma2", sigma2, np.isfinite(sigma2) & (sigma2 >= 0))):
        if not np.all(ok):
            raise ValueError(f"{name} must be finite{' and >= 0' if name == 'sigma2' else ''}, "
                             f"got {v[~ok].flat[0]} (the schedule's value at the requested t, "
                             f"or the value given to stats_at_noise)")
    if not zero_ok and np.any(sigma2 == 0):
        raise ValueError("sigma2 = 0 (t = 0): the empirical score is unbounded there; only a "
                         "model with a regularizer that keeps it bounded (Tikhonov(c > 0), "
                         "Smoothing(bandwidth > 0)) is defined at t = 0")
    return alpha, sigma2


def _per_query(v, m: int, name: str) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(m, float(arr))
    if arr.shape != (m,):
        raise ValueError(f"{name} must be a scalar or have shape ({m},), got shape {arr.shape}")
    return np.ascontiguousarray(arr)


class EmpiricalScore:
    """Exact score model of a training set under a forward schedule.

    Parameters
    ----------
    train : (N, D) array
        Training points. float32 and float64 are kept as they are (the model's compute dtype);
        integer arrays are converted to float64. Queries are cast to the model's dtype.
    schedule : Schedule
        Forward process, e.g. ``mixscore.VP()``.
    weights : (N,) array, optional
        Positive weights pi_n (duplicates as weights, not repeated rows); default equal.
    backend : {"auto", "cpu", "numpy", "cupy", "array_api", "cuda"}
        ``cpu`` is the C++ engine, ``numpy`` the float64 reference, ``cupy`` (alias
        ``array_api``) the array-API fallback on NumPy, torch or CuPy arrays where they live,
        ``cuda`` the CUDA kernels (docs/gpu.md). ``auto`` picks ``cpu`` for host data and
        ``cuda`` (else ``cupy``) for a CuPy array or CUDA torch tensor. With ``cupy`` / ``cuda``
        a torch or CuPy ``train`` stays on its device, queries are moved there and results
        come back in its library, labels and regularizers included (not per-point Smoothing
        bandwidths); the posterior operations (``cov_matvec``, ``cov``, ``posterior_draws``,
        ``cov_noise``) and the ``entropy`` statistic run on a host copy of ``train``.
    dtype : {None, numpy.float32, numpy.float64}
        Override the compute dtype (default: the training data's float dtype).
    refine : {"auto", "all"}
        cpu backend only. ``auto`` recomputes in float64 every logit whose GEMM-expansion error
        bound exceeds 0.05 nats plus the dominant ones; ``all`` recomputes every logit whose
        bound exceeds 1e-9 nats (float64-exact logits, slower at large D).
    num_threads : int
        cpu backend only; 0 uses OpenMP's default. Results do not depend on it.
    row_offset : int
        For a shard of a larger training set: the global index of this shard's first row.
        ``argmax`` and the partial states (``partial``) report global indices. A shard may be
        empty (N = 0): its ``partial`` is the identity of ``mixscore.merge``; its statistics
        are undefined (an error).
    labels : (N,) array, optional
        One label per training point: ``stats/score/denoise(x, t, y=...)`` then give the
        conditional statistics of the points with label y (``mixscore.conditional``).
    regularizer : Regularizer or list, optional
        ``mixscore.regularizers`` policies (Tikhonov, EmpiricalBayes, Smoothing,
        Perturbation) applied to every statistic and sampler; see that module for the
        formulas and what ``denoised`` means then.
    tile : int, optional
        ``cupy`` backend only: training points per tile (memory M x tile; default about
        2^24 / M).
    products : str
        ``cuda`` backend only: how the GPU computes the logits product q . X_n. ``"auto"``:
        float32 FMAs (never TF32), float64 (tensor cores on sm_80+) for the queries where the
        float32 error bound would send every entry to exact refinement; ``"float32"``,
        ``"float64"``: that product throughout; ``"3xtf32"`` (opt-in): split-TF32 tensor-core
        products, float32-level error under a model of the tensor cores' accumulation rather
        than IEEE guarantees (docs/gpu.md). Every choice keeps the exact refinement of what
        carries weight.

    Models pickle and copy (the prepared state is rebuilt), so they work with multiprocessing
    and Dask. ``train`` may also be a Dask array or a list of shards (arrays or .npy paths):
    each shard is prepared on a Dask worker and the statistics merge exactly
    (``mixscore.sharded``; ``backend`` then picks the shards' engine).

    Warns (RuntimeWarning) when the data's scale does not fit the schedule: a variance-
    preserving schedule (VP, Cosine, OU) assumes unit-scale data, so 0..255 pixels must be
    mapped to [-1, 1] first (``mixscore.datasets`` loaders take ``value_range``) or noised with
    VE / EDM and a large enough sigma_max (see ``mixscore.scales.schedule_warning``).
    """

    def __init__(self, train: ArrayLike, schedule: Schedule, weights: ArrayLike | None = None,
                 *, backend: str = "auto", dtype=None, refine: str = "auto",
                 num_threads: int = 0, row_offset: int = 0, labels=None, regularizer=None,
                 tile: int | None = None, products: str = "auto"):
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a mixscore Schedule (e.g. mixscore.VP()), "
                            f"got {type(schedule).__name__}")
        if dtype is not None and np.dtype(dtype) not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32, float64 or None, got {dtype!r}")
        sharded = is_sharded(train)
        native = not sharded and keeps_arrays(backend, train)  # torch / CuPy stays put
        if sharded:
            self.train = as_dask_train(train, dtype)
        elif native:
            self.train = _xp.as_float_matrix(train, "train", *_xp.namespace(train), dtype=dtype)
            top, dev = _xp.magnitudes(self.train)  # (two numbers from the device)
            self._max_abs = check_magnitudes(self.train, "train", _xp.numpy_dtype(
                self.train.dtype), top=top, dev=dev)
        else:
            self.train = as_float_matrix(train, "train", dtype=dtype, allow_empty=True)
            self._max_abs = check_magnitudes(self.train, "train", self.train.dtype)
        self.schedule = schedule
        self.weights = None if weights is None else as_weights(weights, self.train.shape[0])
        self.row_offset = check_row_offset(row_offset)
        self._options = {"backend": backend, "refine": refine, "num_threads": num_threads}
        if tile is not None:  # the array-API backend's training points per tile
            self._options["tile"] = tile
        if products != "auto":  # the cuda backend's logits product
            self._options["products"] = products
        if sharded:
            self.backend = DaskScoreBackend(self.train, self.weights, schedule,
                                            row_offset=self.row_offset, **self._options)
        else:
            if self.train.shape[0] == 0:
                backend = "numpy"  # nothing to prepare: an empty shard only gives a partial
                self.train = _xp.to_host(self.train)  # (host partials, as every model's)
            cls = get_backend(backend, like=self.train)
            if tile is not None and not getattr(cls, "native_arrays", False):
                raise ValueError(f"tile applies to the 'cupy' and 'cuda' backends, not to "
                                 f"{cls.name!r} (got tile={tile!r})")
            extra = {} if tile is None else {"tile": tile}
            if products != "auto":
                if getattr(cls, "name", None) != "cuda":
                    raise ValueError(f"products applies to the 'cuda' backend, not to "
                                     f"{cls.name!r} (got products={products!r})")
                extra["products"] = products
            self.backend = cls(self.train, self.weights, refine=refine,
                               num_threads=check_threads(num_threads),
                               row_offset=self.row_offset, **extra)
        self.regularizers = as_regularizers(regularizer, self)
        per_point = [r for r in self.regularizers if getattr(r, "per_point", False)]
        if native and per_point:
            raise ValueError(f"{per_point[0]!r}: per-point bandwidths need NumPy training "
                             f"data (their float64 pass runs on the host); backend "
                             f"{backend!r} keeps train on its device ({_xp.describe(train)})")
        self.labels = None if labels is None else check_labels(labels, self.n)
        self.label_groups = None if labels is None else LabelGroups(self.labels)
        if getattr(self.backend, "native_arrays", False):  # (not an empty shard's numpy)
            self.train = self.backend.train  # (the cuda backend may have moved it to the GPU)
        checked = self.n and not (sharded or native)  # (no host copy of device data for this)
        why = schedule_warning(self.train, schedule) if checked else None
        if why is not None:
            warnings.warn(why, RuntimeWarning, stacklevel=2)

    def __getstate__(self) -> dict:
        # the prepared (C++) state is rebuilt on unpickling rather than serialized
        return {"train": self.train, "schedule": self.schedule, "weights": self.weights,
                "row_offset": self.row_offset, "options": self._options,
                "labels": self.labels, "regularizer": self.regularizers or None}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["train"], state["schedule"], state["weights"],
                      row_offset=state["row_offset"], labels=state.get("labels"),
                      regularizer=state.get("regularizer"), **state["options"])

    def subset(self, index) -> EmpiricalScore:
        """The model of the training points ``index`` (same schedule, weights, regularizer,
        options; no labels; local indices)."""
        w = None if self.weights is None else self.weights[index]
        regs = [r.subset(index) for r in self.regularizers]  # (per-point values follow)
        return EmpiricalScore(take_rows(self.train, np.asarray(index)), self.schedule, w,
                              regularizer=regs or None, **self._options)

    @property
    def n(self) -> int:
        return self.train.shape[0]

    @property
    def dim(self) -> int:
        return self.train.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return _xp.numpy_dtype(self.train.dtype)  # (torch / CuPy dtypes as NumPy's)

    def __repr__(self) -> str:
        shard = f", row_offset={self.row_offset}" if self.row_offset else ""
        return (f"EmpiricalScore(N={self.n}, D={self.dim}, dtype={self.dtype}, "
                f"schedule={self.schedule!r}, backend={self.backend.name!r}{shard})")

    # --- evaluation ------------------------------------------------------------------------
    @property
    def _native(self) -> bool:
        """Whether the training set stays in its library (torch / CuPy) on the backend."""
        return getattr(self.backend, "native_arrays", False) and _xp.is_foreign(self.train)

    @property
    def host_train(self) -> np.ndarray:
        """The training set as a NumPy array: ``train`` itself, or for a model kept on a device
        a host copy made on first use (the posterior operations of ``mixscore.covariance``,
        e.g. ``cov_matvec`` and ``posterior_draws``, run on the host)."""
        if not self._native:
            return self.train
        if getattr(self, "_host_copy", None) is None:
            self._host_copy = _xp.to_host(self.train)
        return self._host_copy

    def _queries(self, x):
        if self._native:  # checked and kept on the device
            q, single = self.backend.queries(x, self.dim)
            check_magnitudes(q, "x", self.dtype, spread=False,
                             top=_xp.magnitudes(q, spread=False)[0])
            return q, single
        arr = as_plain_array(x, "x")
        single = arr.ndim == 1
        if single:
            if arr.shape[0] != self.dim:
                raise ValueError(f"x must have shape (M, {self.dim}) or ({self.dim},), "
                                 f"got shape {arr.shape}")
            arr = arr[None, :]
        elif arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(f"x must have shape (M, {self.dim}) or ({self.dim},), "
                             f"got shape {arr.shape}")
        arr = as_float_matrix(arr, "x", dtype=self.dtype, allow_empty=True)
        check_magnitudes(arr, "x", self.dtype, spread=False)
        return arr, single

    def stats(self, x: ArrayLike, t: ArrayLike, include: str | Sequence[str] | None = None,
              y=None) -> ScoreStats:
        """All posterior statistics at queries ``x`` (M, D) and time ``t`` (scalar or (M,)),
        from one pass over the training set. ``include`` limits the fields computed: one name
        (``"logpdf"``) or a sequence of names from ``ScoreStats``; ``y`` (one label or one per
        query) conditions on the points with that label."""
        want = _wanted(include)
        xq, single = self._queries(x)
        ts = per_query_times(t, xq.shape[0], self.schedule.t_max, zero_ok=self._bounded)
        return self._stats(xq, single, self.schedule.alpha(ts), self.schedule.sigma2(ts), want,
                           ts, y)

    def stats_at_noise(self, x: ArrayLike, alpha: ArrayLike, sigma2: ArrayLike,
                       include: str | Sequence[str] | None = None, *, t=None,
                       y=None) -> ScoreStats:
        """Like ``stats`` but at explicit noise levels: the mixture with means ``alpha X_n`` and
        variance ``sigma2`` (scalars or one per query), whatever the schedule. ``t`` (scalar
        or (M,)) is needed only by time-dependent regularizers."""
        want = _wanted(include)
        xq, single = self._queries(x)
        m = xq.shape[0]
        ts = None if t is None else _per_query(t, m, "t")
        return self._stats(xq, single, _per_query(alpha, m, "alpha"),
                           _per_query(sigma2, m, "sigma2"), want, ts, y)

    def partial(self, x, t) -> PosteriorPartial:
        """What this training set (or shard) contributes to the statistics at queries ``x``
        (M, D) and time ``t`` (scalar or (M,)): a ``PosteriorPartial`` (running maximum,
        float64 sums about the best point, global indices, the log-weight sum). Merge the
        partials of all shards with ``mixscore.merge`` and call ``.finalize()`` for the
        statistics ``stats`` gives."""
        xq, _ = self._queries(x)
        ts = per_query_times(t, xq.shape[0], self.schedule.t_max)
        alpha, sigma2 = _noise(self.schedule.alpha(ts), self.schedule.sigma2(ts))
        return self.backend.partial(xq, alpha, sigma2)

    @property
    def _bounded(self) -> bool:
        """Whether a regularizer keeps the score bounded as sigma -> 0 (defined at t = 0)."""
        return any(r.bounded for r in self.regularizers)

    def _stats(self, xq, single, alpha, sigma2, want, t=None, y=None) -> ScoreStats:
        alpha, sigma2 = _noise(alpha, sigma2, zero_ok=self._bounded)
        if self.regularizers and "denoised" in want and np.any(alpha == 0):
            raise ValueError("alpha = 0: a regularized model's denoiser (x + sigma2 s) / alpha "
                             "is undefined there (score and eps are defined)")
        if self.n == 0:
            raise ValueError("this EmpiricalScore has no training points (an empty shard): "
                             "only partial() is defined; merge it with the other shards")
        if y is not None:
            out = by_label(self, y, xq.shape[0], lambda sub, r: sub._stats(
                take_rows(xq, r), False, alpha[r], sigma2[r], want, None if t is None else t[r]
            ).as_dict())
        else:
            out = evaluate(self, xq, alpha, sigma2, want, t)
        if single:
            out = {k: v[0] for k, v in out.items()}
        return ScoreStats(**out)

    def _one(self, name, x, t, y=None):
        return getattr(self.stats(x, t, include=(name,), y=y), name)

    def denoise(self, x: ArrayLike, t: ArrayLike, y=None) -> np.ndarray:
        """Posterior mean E[X_0 | X_t = x] (the optimal x0-prediction / CEM target)."""
        return self._one("denoised", x, t, y)

    def score(self, x: ArrayLike, t: ArrayLike, y=None) -> np.ndarray:
        """grad_x log p_t(x) = (alpha(t) denoise(x, t) - x) / sigma(t)^2."""
        return self._one("score", x, t, y)

    def eps(self, x: ArrayLike, t: ArrayLike, y=None) -> np.ndarray:
        """Noise prediction (x - alpha denoise) / sigma = -sigma score."""
        return self._one("eps", x, t, y)

    def logpdf(self, x: ArrayLike, t: ArrayLike, y=None) -> np.ndarray:
        """log p_t(x), the log-density of the noised empirical distribution."""
        return self._one("logpdf", x, t, y)

    def __call__(self, x: ArrayLike, t: ArrayLike) -> np.ndarray:
        return self.score(x, t)

    # --- posterior covariance (mixscore.covariance) -----------------------------------------
    def cov_matvec(self, x, t, v, y=None) -> np.ndarray:
        """C v for the posterior covariance C = (alpha^2/sigma^4) Cov_w(X_0) (generalization-
        through-variance paper, Eq. 34), without a D x D matrix; v has the shape of x."""
        return posterior_op(self, "cov_matvec", x, t, y, v=v)

    def cov(self, x, t, y=None) -> np.ndarray:
        """The full C (D x D per query, D <= 1024)."""
        return posterior_op(self, "cov", x, t, y)

    def hessian_logpdf(self, x, t, y=None) -> np.ndarray:
        """Hessian of log p_t(x): -I / sigma^2 + C (D x D per query, D <= 1024)."""
        return posterior_op(self, "hessian", x, t, y)

    def posterior_draws(self, x, t, R: int, seed: int = 0, y=None) -> np.ndarray:
        """(M, R) (or (R,)) training indices drawn independently from w_n(x, t): exponential
        jumps (the race argmin_n E_n / w_n, equivalent to Gumbel-max, with O(log N) random
        numbers per draw) on counter-based Philox streams (``mixscore.covariance`` and
        cpp/src/draws.hpp document the algorithm and the streams)."""
        return posterior_op(self, "draws", x, t, y, R=R, seed=seed)

    def cov_noise(self, x, t, seed: int = 0, y=None) -> np.ndarray:
        """Gaussian noise with covariance Cov_w(X_0) per query, sum_n sqrt(w_n) zeta_n
        (X_n - xhat0), without a D x D matrix."""
        return posterior_op(self, "noise", x, t, y, seed=seed)
