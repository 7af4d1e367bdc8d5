"""The reference backends: plain NumPy, direct differences, float64 throughout.

Obviously correct rather than fast: the oracle of the tests and the "pure NumPy" baseline of the
benchmarks. Memory stays bounded by processing queries in chunks. Side by side:

* ``NumpyBackend``: the mixture statistics. Per chunk of queries it forms every penalized
  squared distance lam_n = |x - alpha X_n|^2 - 2 sigma^2 log pi_n, and from it the partial state
  of ``mixscore.partial`` (no cutoff: every weight counts); ``stats`` finalizes that state with
  the same ``PosteriorPartial.finalize`` that finalizes merged shards.
* ``NumpyNearest``: exact k nearest points. The squared distance of a query q and a training
  point X_n is summed in a fixed, documented order, the same as the C++ kernel's
  (cpp/include/mixscore/exact.hpp, exact_lam with alpha = 1)::

      t_d = float64(q_d) - float64(X_nd)
      s_j = sum of t_d^2 over d = j, j + 8, j + 16, ... (in increasing d), j = 0..7
      d^2 = ((s_0 + s_4) + (s_2 + s_6)) + ((s_1 + s_5) + (s_3 + s_7))

  so the two backends return bit-identical distances and therefore identical orders. Ties are
  broken by the lower index (a stable sort).
"""

from __future__ import annotations

import numpy as np

from ..partial import NeighborsPartial, PosteriorPartial, inv_two_sigma2
from .base import PARTIAL, SEARCH, STATS

_CHUNK_ELEMENTS = 1 << 22  # queries per chunk * N * D
_NEAREST_CHUNK_ELEMENTS = 1 << 21  # queries per chunk * N * 8


def log_weight_sum(logw: np.ndarray | None, n: int) -> float:
    """log sum_n pi_n from log pi_n without overflow (weights up to 1e308 each)."""
    if n == 0:
        return -np.inf
    if logw is None:
        return float(np.log(n))
    top = float(np.max(logw))
    return top + float(np.log(np.sum(np.exp(logw - top))))


class NumpyBackend:
    """Mixture statistics by dense float64 evaluation, chunked over queries."""

    name = "numpy"
    capabilities = frozenset({STATS, PARTIAL})

    def __init__(self, train: np.ndarray, weights: np.ndarray | None, *, row_offset: int = 0,
                 **_options):
        self.dtype = train.dtype
        self.X = np.asarray(train, dtype=np.float64)
        self.logw = None if weights is None else np.log(weights)
        self.row_offset = int(row_offset)
        self.log_weight_sum = log_weight_sum(self.logw, self.X.shape[0])

    def partial(self, x, alpha, sigma2) -> PosteriorPartial:
        m, d = x.shape
        if self.X.shape[0] == 0:
            return PosteriorPartial.empty(x, alpha, sigma2, self.dtype)
        acc = {"lam_min": np.empty(m), "s0": np.empty(m), "sum_w2": np.empty(m),
               "s2": np.empty(m), "s1": np.empty((m, d)), "centre": np.empty((m, d))}
        best = np.empty(m, np.int64)
        chunk = max(1, _CHUNK_ELEMENTS // max(1, self.X.size))
        for i0 in range(0, m, chunk):
            sl = slice(i0, min(m, i0 + chunk))
            best[sl] = self._chunk(np.asarray(x[sl], np.float64), alpha[sl], sigma2[sl], acc, sl)
        return PosteriorPartial.from_arrays(
            acc, x=x, alpha=alpha, sigma2=sigma2, best=best + self.row_offset,
            log_weight_sum=self.log_weight_sum, n=self.X.shape[0], dtype=self.dtype)

    def stats(self, x, alpha, sigma2, want):
        return self.partial(x, alpha, sigma2).finalize(want)

    def _chunk(self, x, alpha, sigma2, acc, sl) -> np.ndarray:
        X = self.X
        a, s2 = alpha[:, None], sigma2[:, None]
        diff = x[:, None, :] - a[:, :, None] * X[None, :, :]
        lam = np.einsum("mnd,mnd->mn", diff, diff)  # |x - alpha X_n|^2
        if self.logw is not None:
            lam = lam - 2.0 * s2 * self.logw[None, :]
        best = np.argmin(lam, axis=1)  # the first (lowest index) among exact ties
        lam_min = np.take_along_axis(lam, best[:, None], axis=1)
        w = np.exp(-(lam - lam_min) * inv_two_sigma2(s2))
        centre = X[best]
        dev = X[None, :, :] - centre[:, None, :]  # X_n - c: sums about the centre
        acc["lam_min"][sl] = lam_min[:, 0]
        acc["s0"][sl] = w.sum(axis=1)
        acc["sum_w2"][sl] = np.sum(w * w, axis=1)
        acc["s1"][sl] = np.einsum("mn,mnd->md", w, dev)
        acc["s2"][sl] = np.einsum("mn,mnd,mnd->m", w, dev, dev)
        acc["centre"][sl] = centre
        return best


def exact_sq_distances(q: np.ndarray, X: np.ndarray) -> np.ndarray:
    """(m, n) exact squared distances in the fixed 8-lane order (inputs any float dtype)."""
    q = np.asarray(q, np.float64)
    X = np.asarray(X, np.float64)
    m, d = q.shape
    lanes = np.zeros((8, m, X.shape[0]))
    for d0 in range(0, d, 8):
        for j in range(min(8, d - d0)):
            t = q[:, None, d0 + j] - X[None, :, d0 + j]
            lanes[j] += t * t
    return ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + (
        (lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))


def exact_pair_sq_distances(q: np.ndarray, X: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Squared distances of q[i] and X[idx[i, j]], (m, k), in the same fixed order."""
    q = np.asarray(q, np.float64)
    m, d = q.shape
    lanes = np.zeros((8,) + idx.shape)
    for d0 in range(0, d, 8):
        for j in range(min(8, d - d0)):
            t = q[:, None, d0 + j] - np.asarray(X[idx, d0 + j], np.float64)
            lanes[j] += t * t
    return ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + (
        (lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))


def nearest_sq_reference(queries: np.ndarray, train: np.ndarray, k: int):
    """(squared distances (M, k) float64, indices (M, k) int64), ascending by (d^2, index)."""
    m, n = queries.shape[0], train.shape[0]
    d2_out = np.empty((m, k))
    idx = np.empty((m, k), np.int64)
    chunk = max(1, _NEAREST_CHUNK_ELEMENTS // (8 * max(1, n)))
    for i0 in range(0, m, chunk):
        sl = slice(i0, min(m, i0 + chunk))
        d2 = exact_sq_distances(queries[sl], train)
        order = np.argsort(d2, axis=1, kind="stable")[:, :k]
        idx[sl] = order
        d2_out[sl] = np.take_along_axis(d2, order, axis=1)
    return d2_out, idx


def nearest_reference(queries: np.ndarray, train: np.ndarray, k: int):
    """(distances (M, k) float64, indices (M, k) int64), ascending by (distance, index)."""
    d2, idx = nearest_sq_reference(queries, train, k)
    return np.sqrt(d2), idx


class NumpyNearest:
    """Exact nearest neighbours by dense float64 distances; same protocol as the cpu one."""

    name = "numpy"
    capabilities = frozenset({SEARCH})

    def __init__(self, train: np.ndarray, *, num_threads: int = 0):
        self.train = train
        self.n_refined = 0

    def search(self, queries: np.ndarray, k: int):
        dist, idx = nearest_reference(queries, self.train, k)
        self.n_refined = queries.shape[0] * self.train.shape[0]
        return dist, idx


def neighbors_partial(x: np.ndarray, train: np.ndarray, idx: np.ndarray, k: int,
                      row_offset: int, dtype) -> NeighborsPartial:
    """A part's top-k as a partial state: the exact squared distances of the chosen pairs
    (recomputed in the one fixed order, so every backend gives the same bits) and global
    indices."""
    d2 = exact_pair_sq_distances(x, train, idx)
    return NeighborsPartial(x=x, sq_distances=d2, indices=idx + int(row_offset), k=int(k),
                            n=train.shape[0], dtype=np.dtype(dtype))
