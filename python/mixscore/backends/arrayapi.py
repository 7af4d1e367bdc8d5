"""The array-API fallback backend (``backend="cupy"`` or ``"array_api"``): the streaming
mixture statistics written once against the array-API standard, so the same code runs on NumPy
arrays and CPU torch tensors (the tests) and on CuPy arrays or CUDA torch tensors (cuBLAS
products on a GPU). Inputs stay where they are; outputs come back in the training set's array
type and device (queries of another library are moved there first).

The pass (SCIENCE.md sections 1 and 6), over tiles of ``tile`` training points, memory
O((M + N) D + M tile), never M x N:

1. logits from the GEMM expansion about the training mean mu, the product q . p_n through the
   namespace's ``matmul`` in the training set's dtype (float32 stays float32; TF32 is refused,
   ``_xp.exact_float32_products``), with the rigorous bound E of ``cpp/include/mixscore/
   bound.hpp`` (ported in ``expansion_bound``): |A - |x - alpha X_n|^2| <= E;
2. first sweep: every entry that can be the smallest (A - E <= the running min of A + E) is
   recomputed exactly from direct differences in float64; this gives the exact lam_min and
   the argmax (ties: the lowest index, as the reference);
3. second sweep: entries more than ``log N + 40`` nats below the maximum are dropped (total
   weight below e^-40); the others whose bound exceeds ``tol`` nats (relaxed by their distance
   below the maximum: tol e^(gap - log N)) are recomputed exactly; weights e^(-(lam - lam_min)
   / (2 sigma^2)) accumulate in float64 about the mean, and the sums are moved to the centre
   X_best (no variance cancellation, SCIENCE.md s. 6 item 3).

Every weight then has relative error below ~tol (1e-6 nats for float32, 1e-13 for float64),
so the core accuracy contract of tests/test_accuracy.py holds (tests/test_array_api.py).
"""

from __future__ import annotations

import math

import numpy as np

from ..partial import _LOG_2PI, POSTERIOR_FIELDS, PosteriorPartial
from . import _xp
from .base import DEVICE_SAMPLE, PARTIAL, STATS
from .numpy_ref import log_weight_sum

_CUTOFF_NATS = 40.0  # beyond log N + 40 nats below the maximum a weight is dropped
_TOL_NATS = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-13}
_TOL_ALL = 1e-9  # refine="all": as the cpu engine, every bound above 1e-9 nats
_TILE_ELEMENTS = 1 << 24  # queries x training points per tile
_PAIR_ELEMENTS = 1 << 22  # refined pairs x D per chunk of direct differences


def expansion_bound(a, alpha_mu, d: int, u: float):
    """Coefficients (k0, k1, k2) of E(b) = k0 + k1 b + k2 b^2, the rigorous bound on the error
    of the GEMM expansion A = |x'|^2 - 2 alpha q.p_n + alpha^2 |p_n|^2 of |x - alpha X_n|^2
    (a = |x'|, alpha_mu = |alpha| |mu|, b = |alpha| |p_n|, u the product's unit roundoff);
    the formula and its derivation are those of ``ExpansionBound::make`` in
    cpp/include/mixscore/bound.hpp. Works elementwise on arrays of any namespace."""
    u64 = 2.0**-53
    du = d * u
    gamma = du / (1.0 - du) if du < 0.5 else math.inf
    rho = u64 * (1.0 + u64) * (alpha_mu + a)
    u2 = u + u64 + u * u64
    sig = u2 / (1.0 - u2)
    m, c = (d + 9) * u64, 1.01
    k0 = c * (2.0 * a * rho + rho * rho + m * a * a)
    k1 = c * (
        2.0 * (u + gamma * (1.0 + u)) * a
        + 2.0 * rho
        + 2.0 * a * sig
        + 2.0 * rho * sig
        + 2.0 * m * a
    )
    k2 = c * (2.0 * sig + sig * sig + m)
    return k0, k1, k2


class ArrayApiBackend:
    """Mixture statistics and partial states of a training set in any array-API library."""

    name = "cupy"
    capabilities = frozenset({STATS, PARTIAL, DEVICE_SAMPLE})
    native_arrays = True  # EmpiricalScore leaves inputs in their library (no NumPy copies)

    def __init__(
        self,
        train,
        weights: np.ndarray | None,
        *,
        refine: str = "auto",
        row_offset: int = 0,
        tile: int | None = None,
        **_options,
    ):
        if refine not in ("auto", "all"):
            raise ValueError(f"refine must be 'auto' or 'all', got {refine!r}")
        if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
            raise ValueError(f"tile (training points per tile) must be an int >= 1, got {tile!r}")
        self.xp, self.device = _xp.namespace(train)
        xp = self.xp
        self.train = _xp.as_float_matrix(train, "train", xp, self.device)
        self.dtype = _xp.numpy_dtype(self.train.dtype)
        self.n, self.dim = self.train.shape
        self.row_offset = int(row_offset)
        self.tile = tile
        self.tol = _TOL_ALL if refine == "all" else _TOL_NATS[self.dtype]
        self.wide = _xp.wide_dtype(xp, self.device)
        self.u = 2.0**-24 if self.dtype == np.float32 else 2.0**-53
        logw = None if weights is None else np.log(np.asarray(weights, np.float64))
        self.log_weight_sum = log_weight_sum(logw, self.n)
        self.logw = None if logw is None else _xp.place_like(logw, xp, self.device, self.wide)
        wide = xp.astype(self.train, self.wide)
        self.mu = xp.mean(wide, axis=0)
        self.mu_norm = float(xp.sqrt(xp.sum(self.mu * self.mu)))
        self.packed = xp.astype(wide - self.mu, self.train.dtype)  # p_n = fl_T(X_n - mu)
        pw = xp.astype(self.packed, self.wide)
        self.p2 = xp.sum(pw * pw, axis=1)  # |p_n|^2 in float64
        self.pnorm = xp.sqrt(self.p2)

    # --- inputs ---------------------------------------------------------------------------
    def queries(self, x, dim: int):
        """(x as an (M, D) array of this backend's library, dtype and device, single)."""
        shape = tuple(getattr(x, "shape", np.shape(x)))
        single = len(shape) == 1
        if len(shape) not in (1, 2) or shape[-1] != dim:
            raise ValueError(f"x must have shape (M, {dim}) or ({dim},), got shape {shape}")
        arr = x if _xp.is_foreign(x) or isinstance(x, np.ndarray) else np.asarray(x)
        if not _xp.is_foreign(arr) and arr.dtype.kind not in "fiub":
            raise TypeError(f"x must be a real numeric array, got dtype {arr.dtype}")
        if single:
            arr = arr[None, :]
        dtype = self.dtype if _xp.is_foreign(arr) else None
        if dtype is not None and _xp.numpy_dtype(arr.dtype) not in (np.float32, np.float64):
            raise TypeError(
                f"x must be float32 or float64 for this backend, got "
                f"{_xp.describe(x)}; cast it first (e.g. .float())"
            )
        return _xp.as_float_matrix(arr, "x", self.xp, self.device, dtype=self.dtype), single

    # --- the pass -------------------------------------------------------------------------
    def _tile_rows(self, m: int) -> int:
        return self.tile or max(1, min(self.n, _TILE_ELEMENTS // max(1, m)))

    def _approx(self, q, xs2, alpha, bound, j0: int, j1: int):
        """GEMM-expansion squared distances (M, tile) in float64 and their bound E."""
        xp = self.xp
        k0, k1, k2 = bound
        with _xp.exact_float32_products(q):
            g = xp.astype(xp.matmul(q, xp.matrix_transpose(self.packed[j0:j1, :])), self.wide)
        a = alpha[:, None]
        lam = xs2[:, None] - 2.0 * a * g + (a * a) * self.p2[None, j0:j1]
        b = xp.abs(a) * self.pnorm[None, j0:j1]
        err = k0[:, None] + b * (k1[:, None] + b * k2)  # k2 does not depend on the query
        return lam, err

    def _exact(self, xw, alpha, sigma2, j0: int, mask):
        """lam_n = |x - alpha X_n|^2 - 2 sigma^2 log pi_n from direct float64 differences for
        the entries of ``mask`` (M, tile), in the row-major order of the mask."""
        xp = self.xp
        qi, nj = xp.nonzero(mask)
        out = []
        step = max(1, _PAIR_ELEMENTS // self.dim)
        for p0 in range(0, int(qi.shape[0]), step):
            i, j = qi[p0 : p0 + step], nj[p0 : p0 + step] + j0
            rows = xp.astype(xp.take(self.train, j, axis=0), self.wide)
            diff = xp.take(xw, i, axis=0) - xp.take(alpha, i)[:, None] * rows
            lam = xp.sum(diff * diff, axis=1)
            if self.logw is not None:
                lam = lam - 2.0 * xp.take(sigma2, i) * xp.take(self.logw, j)
            out.append(lam)
        return xp.concat(out) if out else xp.zeros(0, dtype=self.wide, device=self.device)

    def accumulate(self, x, alpha, sigma2) -> dict:
        """The partial-state fields (``mixscore.partial``) of queries x (this backend's
        library, (M, D)) at per-query alpha, sigma2 (host float64 (M,)), in the namespace."""
        xp, wide = self.xp, self.wide
        m = x.shape[0]
        xw, q, xs2, alpha, sigma2, bound, inv = self._setup(x, alpha, sigma2)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            lam_min, best, acc = self._pass(q, xw, xs2, alpha, bound, sigma2, inv, m)
        centre = (
            xp.astype(xp.take(self.train, best, axis=0), wide)
            if m
            else xp.zeros((0, self.dim), dtype=wide, device=self.device)
        )
        self._centre_sums(acc, centre - self.mu[None, :])
        acc.update(lam_min=lam_min, centre=centre, best=best)
        return acc

    def _setup(self, x, alpha, sigma2):
        """The per-query inputs of a pass, on the device: x in float64, q = fl_T(x - alpha mu),
        |x - alpha mu|^2, alpha and sigma^2 (from host arrays), the bound's coefficients and
        1 / (2 sigma^2) (at most 1e300)."""
        xp, wide = self.xp, self.wide
        alpha = _xp.place_like(alpha, xp, self.device, wide)
        sigma2 = _xp.place_like(sigma2, xp, self.device, wide)
        xw = xp.astype(x, wide)
        xs = xw - alpha[:, None] * self.mu[None, :]  # x' = x - alpha mu (float64)
        q = xp.astype(xs, self.train.dtype)
        xs2 = xp.sum(xs * xs, axis=1)
        bound = expansion_bound(xp.sqrt(xs2), xp.abs(alpha) * self.mu_norm, self.dim, self.u)
        with np.errstate(divide="ignore"):
            inv = xp.minimum(0.5 / sigma2, xp.full_like(sigma2, 1e300))
        return xw, q, xs2, alpha, sigma2, bound, inv

    def _centre_sums(self, acc: dict, c) -> None:
        """Move the pass's sums about the mean to the centre X_best (c = X_best - mu)."""
        xp = self.xp
        s0, s1 = acc["s0"], acc["s1"]
        acc["s1"] = s1 - s0[:, None] * c
        acc["s2"] = acc["s2"] - 2.0 * xp.sum(c * s1, axis=1) + s0 * xp.sum(c * c, axis=1)

    def _pass(self, q, xw, xs2, alpha, bound, sigma2, inv, m: int):
        """The two sweeps over the training tiles: (lam_min, best, sums about the mean).
        (The cuda backend replaces this by its kernel.)"""
        lam_min, best = self._sweep_min(q, xw, xs2, alpha, bound, sigma2, m)
        return lam_min, best, self._sweep_sums(q, xw, xs2, alpha, bound, sigma2, inv, lam_min)

    def _sweep_min(self, q, xw, xs2, alpha, bound, sigma2, m: int):
        """Exact lam_min and its lowest index: every entry the bound cannot exclude from the
        minimum is recomputed exactly."""
        xp, inf = self.xp, math.inf
        upper = xp.full((m,), inf, dtype=self.wide, device=self.device)
        lam_min = xp.full((m,), inf, dtype=self.wide, device=self.device)
        best = xp.zeros((m,), dtype=xp.int64, device=self.device)
        step = self._tile_rows(m)
        for j0 in range(0, self.n, step):
            j1 = min(self.n, j0 + step)
            lam, err = self._approx(q, xs2, alpha, bound, j0, j1)
            lam = self._penalize(lam, sigma2, j0, j1)
            upper = xp.minimum(upper, xp.min(lam + err, axis=1))
            cand = (lam - err) <= upper[:, None]
            exact = xp.full(lam.shape, inf, dtype=self.wide, device=self.device)
            exact[cand] = self._exact(xw, alpha, sigma2, j0, cand)
            tmin, targ = xp.min(exact, axis=1), xp.argmin(exact, axis=1)
            better = tmin < lam_min  # strict: an earlier tile keeps exact ties
            lam_min = xp.where(better, tmin, lam_min)
            best = xp.where(better, xp.astype(targ, xp.int64) + j0, best)
        return lam_min, best

    def _penalize(self, lam, sigma2, j0: int, j1: int):
        if self.logw is None:
            return lam
        return lam - 2.0 * sigma2[:, None] * self.logw[None, j0:j1]

    def _sweep_sums(self, q, xw, xs2, alpha, bound, sigma2, inv, lam_min) -> dict:
        """float64 sums of the weights, their squares, and the weighted (X_n - mu) and
        |X_n - mu|^2, with every weight that matters from an exact logit."""
        xp, wide = self.xp, self.wide
        m = q.shape[0]
        zeros = xp.zeros((m,), dtype=wide, device=self.device)
        acc = {
            "s0": zeros,
            "sum_w2": zeros,
            "s2": zeros,
            "s1": xp.zeros((m, self.dim), dtype=wide, device=self.device),
        }
        cut, log_n = _CUTOFF_NATS + math.log(self.n), math.log(self.n)
        step = self._tile_rows(m)
        for j0 in range(0, self.n, step):
            j1 = min(self.n, j0 + step)
            lam, err = self._approx(q, xs2, alpha, bound, j0, j1)
            lam = self._penalize(lam, sigma2, j0, j1)
            gap = (lam - err - lam_min[:, None]) * inv[:, None]  # >= the true nats below max
            keep = gap < cut
            slack = xp.exp(xp.clip(gap - log_n, 0.0, 2.0 * _CUTOFF_NATS))
            need = keep & (err * inv[:, None] > self.tol * slack)
            lam[need] = self._exact(xw, alpha, sigma2, j0, need)
            w = xp.where(keep, xp.exp(-(lam - lam_min[:, None]) * inv[:, None]), 0.0)
            xc = xp.astype(self.train[j0:j1, :], wide) - self.mu[None, :]
            acc["s0"] = acc["s0"] + xp.sum(w, axis=1)
            acc["sum_w2"] = acc["sum_w2"] + xp.sum(w * w, axis=1)
            acc["s1"] = acc["s1"] + xp.matmul(w, xc)
            acc["s2"] = acc["s2"] + xp.matmul(w, xp.sum(xc * xc, axis=1))
        return acc

    # --- the protocol ---------------------------------------------------------------------
    def normals(self, seed: int, samples: np.ndarray, step: int, dim: int):
        """The samplers' standard normals (len(samples), dim) float64 of the Philox streams
        (seed, samples, step), on this backend's device: drawn on the host by
        ``mixscore._core.philox_normals`` and moved there (one copy; the cuda backend draws
        them on the GPU)."""
        from .. import _core

        z = _core.philox_normals(seed, np.ascontiguousarray(samples, np.int64), step, dim)
        return _xp.place_like(z, self.xp, self.device, self.xp.float64)

    def _inputs(self, x):
        """x (M, D) in this backend's library, dtype and device (a no-op for ``queries``)."""
        return _xp.as_float_matrix(x, "x", self.xp, self.device, dtype=self.dtype)

    def device_partial(self, x, alpha, sigma2) -> DevicePartial:
        """The pass's accumulators, left on the device (``DevicePartial``)."""
        xq = self._inputs(x)
        return DevicePartial(self, self.accumulate(xq, alpha, sigma2), xq, alpha, sigma2)

    def partial(self, x, alpha, sigma2) -> PosteriorPartial:
        """The partial state (host NumPy arrays: partial states merge on the host)."""
        return self.device_partial(x, alpha, sigma2).host()

    def stats(self, x, alpha, sigma2, want) -> dict:
        """The statistics ``want`` (names of ``STAT_NAMES``) in x's library and device."""
        return self.device_partial(x, alpha, sigma2).finalize(want)


class DevicePartial:
    """A pass's accumulators on the device of an array-API backend, read the way
    ``PosteriorPartial`` is (``regularizers.regularized_stats``): ``xp``, ``place``,
    ``mean``, ``finalize`` and the per-query ``lam_min`` / ``s0`` as host arrays (M numbers,
    copied on first use); ``host()`` is the ``PosteriorPartial`` itself."""

    def __init__(self, backend: ArrayApiBackend, acc: dict, x, alpha, sigma2):
        self.backend, self.acc, self.x = backend, acc, x
        self.alpha = np.asarray(alpha, np.float64)
        self.sigma2 = np.asarray(sigma2, np.float64)
        self.xp = backend.xp
        self.log_weight_sum = backend.log_weight_sum

    @property
    def lam_min(self) -> np.ndarray:
        return _xp.to_host(self.acc["lam_min"])

    @property
    def s0(self) -> np.ndarray:
        return _xp.to_host(self.acc["s0"])

    def place(self, a):
        """``a`` (NumPy or the backend's library) as a float64 array on the device."""
        return self.xp.asarray(a, dtype=self.backend.wide, device=self.backend.device)

    def mean(self):
        """The float64 posterior mean xhat0 (M, D), on the device."""
        return self.acc["centre"] + self.acc["s1"] / self.acc["s0"][:, None]

    def finalize(self, want) -> dict:
        """The statistics ``want`` (names of ``STAT_NAMES``), on the device."""
        b = self.backend
        a, s2 = self.place(self.alpha), self.place(self.sigma2)
        with np.errstate(over="ignore", divide="ignore"):  # score ~ 1/sigma^2 may be inf
            out = finalize(self.xp, self.acc, self.x, a, s2, b.log_weight_sum, want,
                           b.train.dtype)
        if "argmax" in out:
            out["argmax"] = out["argmax"] + b.row_offset
        return out

    def host(self) -> PosteriorPartial:
        """The same state as a host ``PosteriorPartial`` (mergeable with other shards)."""
        b = self.backend
        acc = {k: _xp.to_host(v) for k, v in self.acc.items()}
        return PosteriorPartial.from_arrays(
            acc,
            x=np.asarray(_xp.to_host(self.x)),
            alpha=self.alpha,
            sigma2=self.sigma2,
            best=acc["best"] + b.row_offset,
            log_weight_sum=b.log_weight_sum,
            n=b.n,
            dtype=b.dtype,
        )


def finalize(xp, acc: dict, x, alpha, sigma2, log_weight_sum: float, want, dtype) -> dict:
    """Accumulators to statistics in namespace ``xp``, without leaving the device: the same
    formulas as ``PosteriorPartial.finalize`` (SCIENCE.md section 1), which this must equal
    (tests/test_array_api.py checks it on the same accumulators)."""
    s0 = acc["s0"]
    inv = xp.minimum(0.5 / sigma2, xp.full_like(sigma2, 1e300))
    mean_offset = acc["s1"] / s0[:, None]
    denoised = acc["centre"] + mean_offset
    resid = alpha[:, None] * denoised - xp.astype(x, s0.dtype)
    out = {}
    vectors = {
        "denoised": lambda: denoised,
        "score": lambda: resid / sigma2[:, None],
        "eps": lambda: -resid / xp.sqrt(sigma2)[:, None],
    }
    for name, make in vectors.items():
        if name in want:
            out[name] = xp.astype(make(), dtype)
    if "logpdf" in want:
        d = x.shape[1]
        logpdf = (
            -acc["lam_min"] * inv
            + xp.log(s0)
            - log_weight_sum
            - 0.5 * d * (_LOG_2PI + xp.log(sigma2))
        )
        # sigma = 0 (a bounded regularizer's t = 0): atoms at the training points
        inf = xp.full_like(logpdf, math.inf)
        out["logpdf"] = xp.where(sigma2 > 0, logpdf, xp.where(acc["lam_min"] <= 0, inf, -inf))
    if "tau2" in want:
        m2 = xp.sum(mean_offset * mean_offset, axis=1)
        out["tau2"] = xp.maximum(acc["s2"] / s0 - m2, xp.zeros_like(m2))
    if "max_weight" in want:
        out["max_weight"] = 1.0 / s0
    if "argmax" in want:
        out["argmax"] = acc["best"]
    if "n_eff" in want:
        out["n_eff"] = s0 * s0 / acc["sum_w2"]
    return out


__all__ = ["ArrayApiBackend", "DevicePartial", "expansion_bound", "finalize", "POSTERIOR_FIELDS"]
