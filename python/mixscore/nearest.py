"""Exact k nearest training points (Euclidean): ``ms.nearest`` and ``ms.NearestIndex``.

Why not ``torch.cdist`` + ``topk`` or FAISS: they compute |x|^2 - 2 x.X + |X|^2 in float32, so
an exact copy of a training image reports a distance of several pixel units instead of 0 and
near-ties can come out in the wrong order. Here that expansion (about the training mean, with a
rigorous error bound) only selects candidates; every reported distance is recomputed from
direct float64 differences, so

* a query equal to a training point gets distance 0.0 exactly and that point's index,
* ties are broken by the lower index, and
* results are bit-identical for any number of threads, batch split or query order, and
  between the ``cpu`` and ``numpy`` backends (both sum the squares in the same fixed order).

Memory is O((M + N) D + M k): the M x N distance matrix is never formed.
"""

from __future__ import annotations

import operator
import warnings
from typing import NamedTuple

import numpy as np

from ._validation import as_float_matrix, describe

# Squared float32 dot products must stay far from overflow (max |value|^2 * D < 1e37); beyond
# this, float32 inputs are searched with the float64 kernel (same exact results).
_F32_SAFE = 1e37
_F64_MAX_ABS = 1e150  # squared distances of float64 data must not overflow


class Neighbors(NamedTuple):
    """Result of a nearest-neighbour search; unpacks as ``distances, indices = ...``.

    distances : (M, k) float64, ascending; sqrt of the exact float64 squared distance
    indices   : (M, k) int64 row indices into the training set (lower index first on ties)
    """

    distances: np.ndarray
    indices: np.ndarray


def _check_k(k, n: int) -> int:
    try:
        k = operator.index(k)
    except TypeError:
        raise TypeError(f"k must be an integer, got {k!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"k must satisfy 1 <= k <= N = {n} (the number of training points), "
                         f"got k = {k}")
    return k


def _max_abs(a: np.ndarray) -> float:
    return float(np.max(np.abs(a))) if a.size else 0.0


def _backend_class(name: str):
    if name == "auto":
        from .backends import available

        if "cpu" in available():
            name = "cpu"
        else:
            warnings.warn("mixscore: the C++ extension is not available; nearest() falls back "
                          "to the slow NumPy reference", RuntimeWarning, stacklevel=4)
            name = "numpy"
    if name == "cpu":
        from .backends.nearest_cpu import CpuNearest

        return CpuNearest
    if name == "numpy":
        from .backends.nearest_numpy import NumpyNearest

        return NumpyNearest
    raise ValueError(f"backend must be 'auto', 'cpu' or 'numpy', got {name!r}")


class NearestIndex:
    """A training set prepared for repeated exact searches (like a FAISS flat index).

    Parameters
    ----------
    train : (N, D) array
        Training points; float32 stays float32 (float32 GEMM stage), everything else is
        converted to float64. The array is kept by reference when already C-contiguous float.
    backend : {"auto", "cpu", "numpy"}
    num_threads : int
        cpu backend only; 0 uses OpenMP's default. Results do not depend on it.
    name : str
        How the training set is called in error messages.
    """

    def __init__(self, train, *, backend: str = "auto", num_threads: int = 0,
                 name: str = "train"):
        if int(num_threads) < 0:
            raise ValueError(f"num_threads must be >= 0 (0 = all), got {num_threads}")
        self.name = name
        train = as_float_matrix(train, name)
        m = _max_abs(train)
        if train.dtype == np.float64 and m > _F64_MAX_ABS:
            raise ValueError(f"{name} has values up to {m:.3g}; squared distances would "
                             f"overflow float64 (limit |value| <= {_F64_MAX_ABS:g})")
        if train.dtype == np.float32 and m * m * train.shape[1] > _F32_SAFE / 4:
            train = train.astype(np.float64)
        self.train = train
        self.dtype = train.dtype
        self._impl = _backend_class(backend)(train, num_threads=int(num_threads))
        self.backend = self._impl.name
        self._max_abs = m

    @property
    def n(self) -> int:
        return self.train.shape[0]

    @property
    def dim(self) -> int:
        return self.train.shape[1]

    @property
    def n_refined(self) -> int:
        """Entries recomputed from direct differences in the last search (diagnostic)."""
        return self._impl.n_refined

    def search(self, queries, k: int = 2, *, name: str = "queries") -> Neighbors:
        """The k nearest training points of each query (exact; see the module docstring)."""
        q = as_float_matrix(queries, name)
        if q.shape[1] != self.dim:
            raise ValueError(f"{name} must have shape (M, {self.dim}) to match {self.name} "
                             f"(N = {self.n}, D = {self.dim}), got {describe(q)}")
        k = _check_k(k, self.n)
        if q.dtype != self.dtype:
            cast = q.astype(self.dtype)
            if self.dtype == np.float32 and not np.array_equal(cast, q):
                raise TypeError(
                    f"{name} are float64 but the index is float32 and the queries are not exactly "
                    f"representable in float32; build the index with float64 data (exact "
                    f"distances need the queries unrounded), got {describe(q)}")
            q = cast
        m = _max_abs(q)
        if m > _F64_MAX_ABS:
            raise ValueError(f"{name} has values up to {m:.3g}; squared distances would "
                             f"overflow float64 (limit |value| <= {_F64_MAX_ABS:g})")
        if self.dtype == np.float32 and (m + self._max_abs) ** 2 * self.dim > _F32_SAFE:
            q64 = q.astype(np.float64)
            return NearestIndex(self.train.astype(np.float64), backend=self.backend,
                                num_threads=getattr(self._impl, "num_threads", 0),
                                name=self.name).search(q64, k, name=name)
        dist, idx = self._impl.search(q, k)
        return Neighbors(dist, idx)


def nearest(queries, train, k: int = 2, *, backend: str = "auto", num_threads: int = 0,
            queries_name: str = "queries", train_name: str = "train") -> Neighbors:
    """Exact k nearest training points of each query (Euclidean distance).

    Parameters
    ----------
    queries : (M, D) array
    train : (N, D) array
    k : int
        Number of neighbours, 1 <= k <= N.
    backend : {"auto", "cpu", "numpy"}
        ``cpu`` is the tiled C++ kernel, ``numpy`` the float64 reference; they return identical
        results.
    num_threads : int
        cpu backend only; 0 uses OpenMP's default. Results do not depend on it.

    Returns
    -------
    Neighbors(distances (M, k) float64, indices (M, k) int64), ascending by distance, lower index
    first among equal distances. If both inputs are float32 the GEMM stage runs in float32,
    otherwise in float64; the reported distances are exact float64 either way.
    """
    q = as_float_matrix(queries, queries_name)
    x = as_float_matrix(train, train_name)
    if q.shape[1] != x.shape[1]:
        raise ValueError(f"{queries_name} must have shape (M, {x.shape[1]}) to match "
                         f"{train_name} (N = {x.shape[0]}, D = {x.shape[1]}), got {describe(q)}")
    _check_k(k, x.shape[0])
    dtype = np.result_type(q.dtype, x.dtype)
    index = NearestIndex(x.astype(dtype, copy=False), backend=backend, num_threads=num_threads,
                         name=train_name)
    return index.search(q.astype(index.dtype, copy=False), k, name=queries_name)
