"""Reference exact k-nearest-neighbour search: plain NumPy, float64 direct differences.

The squared distance of a query q and a training point X_n is summed in a fixed, documented
order, the same as the C++ kernel's (cpp/src/nearest_impl.hpp, exact_sq_distance):

    t_d = float64(q_d) - float64(X_nd)
    s_j = sum of t_d^2 over d = j, j + 8, j + 16, ... (in increasing d), j = 0..7
    d^2 = ((s_0 + s_4) + (s_2 + s_6)) + ((s_1 + s_5) + (s_3 + s_7))

so the two backends return bit-identical distances and therefore identical orders. Ties are
broken by the lower index (a stable sort). Memory stays bounded by chunking the queries.
"""

from __future__ import annotations

import numpy as np

_CHUNK_ELEMENTS = 1 << 21  # queries per chunk * N * 8


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


def nearest_reference(queries: np.ndarray, train: np.ndarray, k: int):
    """(distances (M, k) float64, indices (M, k) int64), ascending by (distance, index)."""
    m, n = queries.shape[0], train.shape[0]
    dist = np.empty((m, k))
    idx = np.empty((m, k), np.int64)
    chunk = max(1, _CHUNK_ELEMENTS // (8 * n))
    for i0 in range(0, m, chunk):
        sl = slice(i0, min(m, i0 + chunk))
        d2 = exact_sq_distances(queries[sl], train)
        order = np.argsort(d2, axis=1, kind="stable")[:, :k]
        idx[sl] = order
        dist[sl] = np.sqrt(np.take_along_axis(d2, order, axis=1))
    return dist, idx


class NumpyNearest:
    """Same protocol as backends.nearest_cpu.CpuNearest."""

    name = "numpy"

    def __init__(self, train: np.ndarray, *, num_threads: int = 0):
        self.train = train
        self.n_refined = 0

    def search(self, queries: np.ndarray, k: int):
        dist, idx = nearest_reference(queries, self.train, k)
        self.n_refined = queries.shape[0] * self.train.shape[0]
        return dist, idx
