"""The reference backend: plain NumPy, direct differences, float64 throughout.

Obviously correct rather than fast: it is the oracle of the tests and the "pure NumPy" baseline
of the benchmarks. Memory stays bounded by processing queries in chunks.
"""

from __future__ import annotations

import numpy as np

_CHUNK_ELEMENTS = 1 << 22  # queries per chunk * N * D


def _inv2s2(sigma2):
    return np.minimum(0.5 / sigma2, 1e300)  # sigma -> 0: hard assignment, never inf * 0


class NumpyBackend:
    name = "numpy"

    def __init__(self, train: np.ndarray, weights: np.ndarray | None, **_options):
        self.dtype = train.dtype
        self.X = np.asarray(train, dtype=np.float64)
        self.logw = None if weights is None else np.log(weights)
        n = self.X.shape[0]
        self.logsumw = np.log(n) if weights is None else np.log(np.sum(weights))

    def stats(self, x, alpha, sigma2, want):
        X, (m, d) = self.X, x.shape
        out = {k: np.empty((m, d), self.dtype) for k in ("denoised", "score", "eps") if k in want}
        out.update({k: np.empty(m) for k in ("logpdf", "tau2", "max_weight", "n_eff")
                    if k in want})
        if "argmax" in want:
            out["argmax"] = np.empty(m, np.int64)
        chunk = max(1, _CHUNK_ELEMENTS // max(1, X.size))
        with np.errstate(over="ignore"):  # score ~ 1/sigma^2 may overflow float32: inf is right
            for i0 in range(0, m, chunk):
                sl = slice(i0, min(m, i0 + chunk))
                self._chunk(np.asarray(x[sl], np.float64), alpha[sl], sigma2[sl], out, sl)
        return out

    def _chunk(self, x, alpha, sigma2, out, sl):
        X = self.X
        a, s2 = alpha[:, None], sigma2[:, None]
        diff = x[:, None, :] - a[:, :, None] * X[None, :, :]
        lam = np.einsum("mnd,mnd->mn", diff, diff)  # |x - alpha X_n|^2
        if self.logw is not None:
            lam = lam - 2.0 * s2 * self.logw[None, :]
        lam_min = lam.min(axis=1, keepdims=True)
        w = np.exp(-(lam - lam_min) * _inv2s2(s2))
        s0 = w.sum(axis=1)
        p = w / s0[:, None]
        xhat = p @ X
        resid = a * xhat - x
        if "denoised" in out:
            out["denoised"][sl] = xhat
        if "score" in out:
            out["score"][sl] = resid / s2
        if "eps" in out:
            out["eps"][sl] = -resid / np.sqrt(s2)
        if "logpdf" in out:
            d = X.shape[1]
            out["logpdf"][sl] = (-lam_min[:, 0] * _inv2s2(sigma2) + np.log(s0) - self.logsumw
                                 - 0.5 * d * np.log(2 * np.pi * sigma2))
        if "tau2" in out:
            dev = X[None, :, :] - xhat[:, None, :]
            out["tau2"][sl] = np.einsum("mn,mnd,mnd->m", p, dev, dev)
        if "max_weight" in out:
            out["max_weight"][sl] = p.max(axis=1)
        if "argmax" in out:
            out["argmax"][sl] = np.argmin(lam, axis=1)
        if "n_eff" in out:
            out["n_eff"][sl] = 1.0 / np.sum(p * p, axis=1)
