"""Smoothing with one bandwidth per training point: the data convolved point by point,

    p_t(x) = sum_n pi_n N(x; alpha X_n, s_n^2 I) / sum_n pi_n,    s_n^2 = sigma^2 + alpha^2 h_n^2

(bounded-target paper Thm 3.7 and Pidstrigach Corollary 1 with a kernel of its own per point,
``Smoothing(h)`` with h of shape (N,)). The posterior over points is

    w_n = softmax_n(log pi_n - (D/2) log s_n^2 - |x - alpha X_n|^2 / (2 s_n^2)),

the score s = sum_n w_n (alpha X_n - x) / (s_n^2 + c) (c: a Tikhonov level, 0 without) plus a
perturbation e(x, t), and ``denoised`` = (x + sigma^2 s) / alpha as for every regularized model.
The components no longer share one variance, so the engine's single scale 1 / (2 sigma^2) does
not apply: this is a float64 NumPy pass over chunks of training points with an online
log-sum-exp (memory O(M x chunk x D), never M x N x D), exact to float64 rounding. Statistics:
logpdf, denoised, score, eps, max_weight, argmax, n_eff, entropy; tau2 and trace_cov (the
covariance of a heteroscedastic posterior is not the engine's alpha^2 tau2 / sigma^4) stay
None; Empirical Bayes and the posterior operations (draws, C v) are refused.
"""

from __future__ import annotations

import numpy as np

from .backends.numpy_ref import log_weight_sum
from .partial import _LOG_2PI
from .regularizers import (
    Context,
    Perturbation,
    Smoothing,
    Tikhonov,
    _level_at,
)

_CHUNK_ELEMENTS = 1 << 22  # queries x points x D per chunk of direct differences
STATS = ("logpdf", "denoised", "score", "eps", "max_weight", "argmax", "n_eff", "entropy")


def per_point_stats(model, x: np.ndarray, t, alpha: np.ndarray, sigma2: np.ndarray,
                    regs: tuple, want: set) -> dict:
    """The statistics ``want`` of ``model`` smoothed with per-point bandwidths (the Smoothing
    among ``regs``), composed with Tikhonov and Perturbation, at queries x (M, D)."""
    if not want & set(STATS):  # (the others are left None, as not requested)
        raise ValueError(f"Smoothing with one bandwidth per point gives {STATS}; "
                         f"{sorted(want)} are not defined for it")
    h2 = next(r for r in regs if isinstance(r, Smoothing)).bandwidth ** 2
    x = np.asarray(x, np.float64)
    m, d = x.shape
    c = np.zeros(m)
    for r in regs:
        if isinstance(r, Tikhonov):
            c = c + _level_at(r.c, t, m, "c", "Tikhonov")
    X = np.asarray(model.train, np.float64)
    logpi = np.zeros(X.shape[0]) if model.weights is None else np.log(model.weights)
    top = np.full(m, -np.inf)  # running maximum of the logits
    s0, sw2, slog = np.zeros(m), np.zeros(m), np.zeros(m)  # sums of e^(l - top), e^2(.), l e^(.)
    resid = np.zeros((m, d))  # sum of e^(l - top) (alpha X_n - x) / (s_n^2 + c)
    best = np.full(m, -1, np.int64)
    nc = max(1, _CHUNK_ELEMENTS // max(1, m * d))
    for n0 in range(0, X.shape[0], nc):
        Xb = X[n0:n0 + nc]
        diff = alpha[:, None, None] * Xb[None] - x[:, None, :]  # (m, nc, D)
        s2n = sigma2[:, None] + (alpha * alpha)[:, None] * h2[None, n0:n0 + nc]
        logits = (logpi[None, n0:n0 + nc] - 0.5 * d * np.log(s2n)
                  - np.einsum("mnd,mnd->mn", diff, diff) / (2.0 * s2n))
        new_top = np.maximum(top, logits.max(axis=1))
        f = np.exp(top - new_top)  # rescale what came before (0 at the start)
        e = np.exp(logits - new_top[:, None])
        s0 = s0 * f + e.sum(axis=1)
        sw2 = sw2 * f * f + (e * e).sum(axis=1)
        slog = slog * f + (e * logits).sum(axis=1)
        resid = resid * f[:, None] + np.einsum("mn,mnd->md", e / (s2n + c[:, None]), diff)
        j = logits.argmax(axis=1)
        better = logits[np.arange(m), j] > top
        best = np.where(better, n0 + j, best)
        top = new_top
    ctx = Context(x=x, t=t, alpha=alpha, sigma2=sigma2, mix_sigma2=sigma2,
                  shift=np.zeros_like(x))
    for r in regs:
        if isinstance(r, Perturbation):
            r.apply(ctx)
    score = resid / s0[:, None] + ctx.shift
    logw = None if model.weights is None else np.log(model.weights)
    out = {
        "logpdf": top + np.log(s0) - log_weight_sum(logw, model.n) - 0.5 * d * _LOG_2PI,
        "score": score,
        "eps": -np.sqrt(sigma2)[:, None] * score,
        "denoised": (x + sigma2[:, None] * score) / alpha[:, None],
        "max_weight": 1.0 / s0,
        "argmax": best + model.row_offset,
        "n_eff": s0 * s0 / sw2,
        "entropy": np.log(s0) + top - slog / s0,
    }
    dtype = model.dtype
    return {k: (v if k in ("argmax", "logpdf", "max_weight", "n_eff", "entropy")
                else v.astype(dtype)) for k, v in out.items() if k in want}
