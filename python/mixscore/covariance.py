"""Posterior covariance and per-entry posterior quantities (SCIENCE.md sections 1 and 4).

With w_n = p(n | x, t) and xhat0 = sum_n w_n X_n:

    C(x, t) = (alpha^2 / sigma^4) Cov_w(X_0)        (generalization-through-variance paper,
                                                    Eq. 34: the proxy-score covariance)
    tr C    = alpha^2 tau2 / sigma^4
    Hessian of log p_t(x) = -I / sigma^2 + C
    H(w)    = -sum_n w_n log w_n                   (posterior entropy, nats)

``trace_cov`` (from ``tau2``) and, without weights, ``entropy`` come from the accumulators of
the one pass. C v, C, the Hessian, posterior draws (exponential jumps) and Gaussian noise of
covariance Cov_w(X_0) need every weight; they are computed here as chunked
float64 NumPy reductions over the training set (direct differences, bounded memory),
normalized by the log-sum-exp of the engine's pass, so they cost O(M N D) in NumPy, not in the
engine.
``posterior_draws`` here is the reference: a backend with the ``draws`` capability (the cpu
backend, cpp/src/draws.hpp) draws from the same streams in one engine pass, and
``EmpiricalScore.posterior_draws`` and the naive sampler use it.

Random streams (counter-based Philox, independent of batch split): draw r of query row i in
``posterior_draws`` takes its j-th replacement's numbers from the block of counter (j,
first_step + r, i) and key seed ^ DRAWS_KEY; ``cov_noise`` uses the normal of (key seed ^
NOISE_KEY, id i N_total + n, step) for point n (global index). The samplers pass the
sample's global index as i and their step number in the counter (``first_step = k R`` for
the R draws of step k), so every (seed, sample, step) has its own stream.
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


def entropy(part: PosteriorPartial, model) -> np.ndarray:
    """The posterior entropy H(w) (nats) per query from the partial state ``part``: from its
    sums without weights, else by a dense float64 pass over the training set."""
    if model.weights is not None:
        return _dense_entropy(model, part)
    # H = log s0 + sum_n w_n (lam_n - lam_min) / (2 sigma^2), lam_n - lam_min =
    # alpha^2 |X_n - c|^2 - 2 alpha (X_n - c).(x - alpha c): sums about the centre c
    m_off, a = part.s1 / part.s0[:, None], part.alpha
    r = part.x.astype(np.float64) - a[:, None] * part.centre
    excess = a * a * part.s2 / part.s0 - 2.0 * a * np.einsum("md,md->m", m_off, r)
    return np.log(part.s0) + np.maximum(0.0, excess) * inv_two_sigma2(part.sigma2)


def _blocks(model, part: PosteriorPartial):
    """(query slice, point slice, logits - LSE (mq, nc), X block (nc, D)) over the training
    set, float64 direct differences."""
    X = np.asarray(model.host_train, np.float64)
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
    xh = part.mean()
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
    xh = part.mean()
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
    model,
    part: PosteriorPartial,
    R: int,
    seed: int,
    rows: np.ndarray,
    first_step: int = 0,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """(M, R) training indices (of ``model``, local) drawn from w by exponential jumps
    (Efraimidis and Spirakis' A-ExpJ for one item, in the form of the race argmin_n E_n / w_n,
    E_n ~ Exp(1)) over the weights relative to the maximum, truncated as the engine does: the
    points are visited in ``order`` (default 0 .. N-1; the cpu backend visits
    ``prepared.visit_order``); a draw keeps its key K and the weight X to skip; the
    entry whose cumulative weight passes X replaces it with key E / w (E ~ Exp(1) below K w)
    and the next skip is J / K (J ~ Exp(1)). Draw r of query i takes replacement j's numbers
    from the Philox block of counter (j, first_step + r, rows[i]) and key seed ^ DRAWS_KEY:
    the algorithm and streams of cpp/src/draws.hpp."""
    m = part.x.shape[0]
    order = np.arange(model.n) if order is None else np.asarray(order, np.int64)
    key = (int(seed) ^ DRAWS_KEY) & 0xFFFFFFFFFFFFFFFF
    philox_key = [key & 0xFFFFFFFF, key >> 32]
    best = np.full((m, R), -1, np.int64)
    blocks: dict = {}
    for qs, _ns, lw, _ in _blocks(model, part):
        blocks.setdefault((qs.start, qs.stop), []).append(lw)
    # the engine's truncation (cpp/src/draws.hpp): weights relative to the maximum, those more
    # than log N + 20 (float32) or 40 (float64) nats below it, and at most 60, left out
    cut = min(60.0, np.log(model.n) + (20.0 if np.dtype(model.dtype) == np.float32 else 40.0))
    for (q0, q1), parts in blocks.items():
        lw = np.concatenate(parts, axis=1)[:, order]
        lw = lw - lw.max(axis=1, keepdims=True)
        w_all = np.where(lw >= -cut, np.exp(lw), 0.0)
        for i in range(q0, q1):
            w = w_all[i - q0]
            cum = np.cumsum(w)
            row = int(rows[i])
            for r in range(R):
                best[i, r] = order[_jump_draw(w, cum, [row & 0xFFFFFFFF, row >> 32],
                                              first_step + r, philox_key)]
    return best


def _unit_double(hi: int, lo: int) -> float:
    return float(((hi << 32) | lo) >> 11) * 2.0**-53


def _jump_draw(w: np.ndarray, cum: np.ndarray, row: list, s: int, philox_key: list) -> int:
    """One draw (a position in the visiting order) by exponential jumps over weights w."""
    K, X, base, j, pos = np.inf, 0.0, 0.0, 0, -1
    while True:
        k = int(np.searchsorted(cum, base + X, side="right"))  # cumulative weight passes X
        if k >= w.size:
            return pos
        b = _core.philox4x32_10([j, s, row[0], row[1]], philox_key)
        j += 1
        u1, u2 = _unit_double(b[0], b[1]), _unit_double(b[2], b[3])
        p = -np.expm1(-K * w[k]) if np.isfinite(K) else 1.0
        K = -np.log1p(-u1 * p) / w[k]
        X = -np.log1p(-u2) / K if K > 0 else np.inf
        base, pos = cum[k], k


def cov_noise(
    model, part: PosteriorPartial, seed: int, rows: np.ndarray, step: int = 0
) -> np.ndarray:
    """xi = sum_n sqrt(w_n) zeta_n (X_n - xhat0), zeta_n iid N(0, 1): Gaussian noise with
    covariance Cov_w(X_0) (not scaled by alpha^2/sigma^4), (M, D), without a D x D matrix."""
    xh = part.mean()
    out = np.zeros_like(xh)
    n_total = model.n
    key = (int(seed) ^ NOISE_KEY) & 0xFFFFFFFFFFFFFFFF
    for qs, ns, lw, Xb in _blocks(model, part):
        ids = _stream_ids(rows[qs], ns, n_total)
        z = _core.philox_normals(key, ids, step, 1).reshape(lw.shape)
        dev = Xb[None, :, :] - xh[qs, None, :]
        out[qs] += np.einsum("mn,mnd->md", np.exp(0.5 * lw) * z, dev)
    return out
