"""Posterior covariance and per-entry posterior quantities (SCIENCE.md sections 1 and 4).

With w_n = p(n | x, t) and xhat0 = sum_n w_n X_n:

    C(x, t) = (alpha^2 / sigma^4) Cov_w(X_0)        (generalization-through-variance paper,
                                                    Eq. 34: the proxy-score covariance)
    tr C    = alpha^2 tau2 / sigma^4
    Hessian of log p_t(x) = -I / sigma^2 + C
    H(w)    = -sum_n w_n log w_n                   (posterior entropy, nats)

``trace_cov`` and (without weights) ``entropy`` come from the accumulators of the one pass
(``posterior_extras``). C v, C, the Hessian, Gumbel-max posterior draws and Gaussian noise of
covariance Cov_w(X_0) need every weight; they are computed here as chunked float64 NumPy
reductions over the training set (direct differences, bounded memory), normalized by the
log-sum-exp of the engine's pass, so they cost O(M N D) in NumPy, not in the engine.
``posterior_draws`` here is the reference: a backend with the ``draws`` capability (the cpu
backend, cpp/src/draws.hpp) draws from the same streams in one engine pass, and
``EmpiricalScore.posterior_draws`` and the naive sampler use it.

Random streams (counter-based Philox, independent of batch split): query row i, point n (global
index), draw r of ``posterior_draws`` use the uniform of (key seed ^ DRAWS_KEY, id i N_total + n,
step first_step + r); ``cov_noise`` uses the normal of (key seed ^ NOISE_KEY, id i N_total + n,
step). The samplers pass the sample's global index as i and their step number in the counter's
step (``first_step = k R`` for the R draws of step k), so every (seed, sample, step) has its own
stream.
"""

from __future__ import annotations

import numpy as np

from . import _core
from .backends import _xp
from .partial import PosteriorPartial, inv_two_sigma2

DRAWS_KEY = _core.DRAWS_KEY  # 0x9E3779B97F4A7C15, cpp/include/mixscore/draws.hpp
NOISE_KEY = 0xD1B54A32D192ED03
EXTRA_STATS = ("trace_cov", "entropy")
_CHUNK_ELEMENTS = 1 << 21  # queries x points x D per block
MAX_COV_DIM = 1024


def log_normalizer(part: PosteriorPartial) -> np.ndarray:
    """LSE_n(l_n) = log sum_n pi_n exp(-|x - alpha X_n|^2 / (2 sigma^2)) from the pass."""
    return -part.lam_min * inv_two_sigma2(part.sigma2) + np.log(part.s0)


def _mean_offset(part: PosteriorPartial) -> np.ndarray:
    return part.s1 / part.s0[:, None]


def posterior_extras(part: PosteriorPartial, want: set, model) -> dict:
    """``trace_cov`` and ``entropy`` (when in ``want``) from the partial state ``part``."""
    out = {}
    if not want & set(EXTRA_STATS):
        return out
    m_off = _mean_offset(part)
    s2, a = part.sigma2, part.alpha
    if "trace_cov" in want:
        tau2 = np.maximum(0.0, part.s2 / part.s0 - np.einsum("md,md->m", m_off, m_off))
        out["trace_cov"] = _scaled(tau2, part)
    if "entropy" in want:
        if model.weights is None:
            # H = log s0 + sum_n w_n (lam_n - lam_min) / (2 sigma^2), lam_n - lam_min =
            # alpha^2 |X_n - c|^2 - 2 alpha (X_n - c).(x - alpha c): sums about the centre c
            r = part.x.astype(np.float64) - a[:, None] * part.centre
            excess = a * a * part.s2 / part.s0 - 2.0 * a * np.einsum("md,md->m", m_off, r)
            out["entropy"] = np.log(part.s0) + np.maximum(0.0, excess) * inv_two_sigma2(s2)
        else:
            out["entropy"] = _dense_entropy(model, part)
    return out


def _blocks(model, part: PosteriorPartial):
    """(query slice, point slice, logits - LSE (mq, nc), X block (nc, D)) over the training
    set, float64 direct differences."""
    X = np.asarray(model.train, np.float64)
    logw = None if model.weights is None else np.log(model.weights)
    x = np.asarray(part.x, np.float64)
    m, d = x.shape
    lse = log_normalizer(part)
    inv = inv_two_sigma2(part.sigma2)
    nc = max(1, min(X.shape[0], _CHUNK_ELEMENTS // max(1, d * min(m, 64))))
    mq = max(1, _CHUNK_ELEMENTS // max(1, d * nc))
    for i0 in range(0, m, mq):
        qs = slice(i0, min(m, i0 + mq))
        for n0 in range(0, X.shape[0], nc):
            ns = slice(n0, min(X.shape[0], n0 + nc))
            diff = x[qs, None, :] - part.alpha[qs, None, None] * X[None, ns, :]
            lg = -np.einsum("mnd,mnd->mn", diff, diff) * inv[qs, None]
            if logw is not None:
                lg = lg + logw[None, ns]
            yield qs, ns, lg - lse[qs, None], X[ns]


def _dense_entropy(model, part: PosteriorPartial) -> np.ndarray:
    h = np.zeros(part.x.shape[0])
    for qs, _, lw, _ in _blocks(model, part):
        w = np.exp(lw)
        h[qs] -= np.sum(np.where(w > 0, w * lw, 0.0), axis=1)
    return np.maximum(h, 0.0)


def scaled_by_alpha2_over_sigma4(
    v: np.ndarray, alpha: np.ndarray, sigma2: np.ndarray
) -> np.ndarray:
    """alpha^2 v / sigma^4 (v of shape (M, ...)), dividing in steps: 0 stays 0 at tiny sigma
    (SCIENCE.md section 6, item 5: powers of sigma last)."""
    if _xp.is_foreign(v):  # a torch / CuPy statistic stays on its device
        xp, dev = _xp.namespace(v)
        alpha, sigma2 = (_xp.place_like(a, xp, dev, v.dtype) for a in (alpha, sigma2))
    else:
        v = np.asarray(v, np.float64)
    shape = (-1,) + (1,) * (v.ndim - 1)
    a, s2 = alpha.reshape(shape), sigma2.reshape(shape)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        out = ((a * a) * v / s2) / s2
    out[v == 0] = 0.0  # sigma = 0 (a bounded regularizer's t = 0): 0 stays 0, not 0 / 0
    return out


def _scaled(v: np.ndarray, part: PosteriorPartial) -> np.ndarray:
    return scaled_by_alpha2_over_sigma4(v, part.alpha, part.sigma2)


def cov_matvec(model, part: PosteriorPartial, v: np.ndarray) -> np.ndarray:
    """C v per query, (M, D), without a D x D matrix: (alpha^2/sigma^4) sum_n w_n
    (X_n - xhat0) ((X_n - xhat0) . v)."""
    xh = part.centre + _mean_offset(part)
    out = np.zeros_like(xh)
    for qs, _, lw, Xb in _blocks(model, part):
        w = np.exp(lw)
        dev = Xb[None, :, :] - xh[qs, None, :]
        proj = np.einsum("mnd,md->mn", dev, v[qs])
        out[qs] += np.einsum("mn,mnd->md", w * proj, dev)
    return _scaled(out, part)


def cov(model, part: PosteriorPartial) -> np.ndarray:
    """The full C per query, (M, D, D), for D <= 1024."""
    m, d = part.x.shape
    if d > MAX_COV_DIM:
        raise ValueError(
            f"cov builds a D x D matrix per query and is limited to D <= "
            f"{MAX_COV_DIM}, got D = {d}; use cov_matvec(x, t, v)"
        )
    xh = part.centre + _mean_offset(part)
    out = np.zeros((m, d, d))
    for qs, _, lw, Xb in _blocks(model, part):
        w = np.exp(lw)
        dev = Xb[None, :, :] - xh[qs, None, :]
        out[qs] += np.einsum("mn,mnd,mne->mde", w, dev, dev)
    out = 0.5 * (out + np.swapaxes(out, 1, 2))
    return _scaled(out, part)


def _stream_ids(rows: np.ndarray, ns: slice, n_total: int) -> np.ndarray:
    q = np.asarray(rows, np.int64)[:, None]
    return (q * n_total + np.arange(ns.start, ns.stop, dtype=np.int64)[None, :]).ravel()


def posterior_draws(
    model, part: PosteriorPartial, R: int, seed: int, rows: np.ndarray, first_step: int = 0
) -> np.ndarray:
    """(M, R) training indices (of ``model``, local) drawn from w by Gumbel-max,
    argmax_n (l_n + G_n). Query i uses the streams of row id rows[i], steps first_step ..
    first_step + R - 1."""
    m = part.x.shape[0]
    n_total = model.n
    best = np.full((m, R), -1, np.int64)
    top = np.full((m, R), -np.inf)
    key = (int(seed) ^ DRAWS_KEY) & 0xFFFFFFFFFFFFFFFF
    for qs, ns, lw, _ in _blocks(model, part):
        ids = _stream_ids(rows[qs], ns, n_total)
        for r in range(R):
            u = _core.philox_uniforms(key, ids, first_step + r).reshape(lw.shape)
            with np.errstate(divide="ignore"):
                g = lw - np.log(-np.log(u))
            j = np.argmax(g, axis=1)
            val = g[np.arange(g.shape[0]), j]
            better = val > top[qs, r]
            top[qs, r] = np.where(better, val, top[qs, r])
            best[qs, r] = np.where(better, j + ns.start, best[qs, r])
    return best


def cov_noise(
    model, part: PosteriorPartial, seed: int, rows: np.ndarray, step: int = 0
) -> np.ndarray:
    """xi = sum_n sqrt(w_n) zeta_n (X_n - xhat0), zeta_n iid N(0, 1): Gaussian noise with
    covariance Cov_w(X_0) (not scaled by alpha^2/sigma^4), (M, D), without a D x D matrix."""
    xh = part.centre + _mean_offset(part)
    out = np.zeros_like(xh)
    n_total = model.n
    key = (int(seed) ^ NOISE_KEY) & 0xFFFFFFFFFFFFFFFF
    for qs, ns, lw, Xb in _blocks(model, part):
        ids = _stream_ids(rows[qs], ns, n_total)
        z = _core.philox_normals(key, ids, step, 1).reshape(lw.shape)
        dev = Xb[None, :, :] - xh[qs, None, :]
        out[qs] += np.einsum("mn,mnd->md", np.exp(0.5 * lw) * z, dev)
    return out
