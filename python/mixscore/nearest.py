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
from typing import NamedTuple

import numpy as np

from ._validation import as_float_matrix, describe
from .backends import get_backend
from .backends.numpy_ref import neighbors_partial
from .empirical import check_row_offset
from .partial import NeighborsPartial

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


def check_k(k, n: int, low: int = 1, why: str = "the number of training points") -> int:
    """k as an int in [low, n], or a clear error."""
    try:
        k = operator.index(k)
    except TypeError:
        raise TypeError(f"k must be an integer, got {k!r}") from None
    if not low <= k <= n:
        raise ValueError(f"k must satisfy {low} <= k <= N = {n} ({why}), got k = {k}")
    return k


def _max_abs(a: np.ndarray) -> float:
    return float(np.max(np.abs(a))) if a.size else 0.0


def _is_float32_exact(a: np.ndarray, chunk: int = 1 << 20) -> bool:
    """Every value of ``a`` is exactly a float32 (checked in row chunks, bounded memory)."""
    if a.dtype == np.float32:
        return True
    rows = max(1, chunk // max(1, a.shape[1]))
    return all(np.array_equal(a[i:i + rows].astype(np.float32), a[i:i + rows])
               for i in range(0, a.shape[0], rows))


class NearestIndex:
    """A training set prepared for repeated exact searches (like a FAISS flat index).

    The GEMM stage runs in float32 when all values are exactly float32 numbers (float32 data,
    or float64 arrays holding them, e.g. 8-bit images) and far from float32 overflow, else in
    float64; queries that are not exactly float32 are searched with a float64-prepared copy.
    Either way the reported distances are the exact float64 ones of the values given.

    Parameters
    ----------
    train : (N, D) array
        Training points (integer arrays are converted to float64). Kept by reference when
        already a C-contiguous float array.
    backend : {"auto", "cpu", "numpy"}
    num_threads : int
        cpu backend only; 0 uses OpenMP's default. Results do not depend on it.
    name : str
        How the training set is called in error messages.
    row_offset : int
        For a shard of a larger training set: the global index of this shard's first row, used
        by ``partial`` (whose indices are global). A shard may be empty.

    Indexes pickle and copy (the prepared state is rebuilt).
    """

    def __init__(self, train, *, backend: str = "auto", num_threads: int = 0,
                 name: str = "train", row_offset: int = 0):
        if int(num_threads) < 0:
            raise ValueError(f"num_threads must be >= 0 (0 = all), got {num_threads}")
        self.name = name
        self.row_offset = check_row_offset(row_offset)
        self._backend_name = backend
        train = as_float_matrix(train, name, allow_empty=True)
        m = _max_abs(train)
        if m > _F64_MAX_ABS:
            raise ValueError(f"{name} has values up to {m:.3g}; squared distances would "
                             f"overflow float64 (limit |value| <= {_F64_MAX_ABS:g})")
        self.train = train
        self._max_abs = m
        self._cls = get_backend(backend, "nearest")
        self.backend = self._cls.name
        self._num_threads = int(num_threads)
        self._prepared = {}
        f32 = m * m * train.shape[1] <= _F32_SAFE / 4 and _is_float32_exact(train)
        self.dtype = np.dtype(np.float32 if f32 else np.float64)
        self._last = self._prepare(self.dtype) if self.n else None

    def __repr__(self) -> str:
        shard = f", row_offset={self.row_offset}" if self.row_offset else ""
        return (f"NearestIndex(N={self.n}, D={self.dim}, dtype={self.dtype}, "
                f"backend={self.backend!r}{shard})")

    def __getstate__(self) -> dict:
        # the packed (C++) state is rebuilt on unpickling rather than serialized
        return {"train": self.train, "backend": self._backend_name,
                "num_threads": self._num_threads, "name": self.name,
                "row_offset": self.row_offset}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["train"], backend=state["backend"],
                      num_threads=state["num_threads"], name=state["name"],
                      row_offset=state["row_offset"])

    def _prepare(self, dtype):
        dtype = np.dtype(dtype)
        if dtype not in self._prepared:
            self._prepared[dtype] = self._cls(self.train.astype(dtype, copy=False),
                                              num_threads=self._num_threads)
        return self._prepared[dtype]

    @property
    def n(self) -> int:
        return self.train.shape[0]

    @property
    def dim(self) -> int:
        return self.train.shape[1]

    @property
    def n_refined(self) -> int:
        """Entries recomputed from direct differences in the last search (diagnostic)."""
        return self._last.n_refined if self._last is not None else 0

    def _checked_queries(self, queries, name: str) -> np.ndarray:
        q = as_float_matrix(queries, name)
        if q.shape[1] != self.dim:
            raise ValueError(f"{name} must have shape (M, {self.dim}) to match {self.name} "
                             f"(N = {self.n}, D = {self.dim}), got {describe(q)}")
        return q

    def partial(self, queries, k: int = 2, *, name: str = "queries") -> NeighborsPartial:
        """This training set's (or shard's) k nearest points of each query as a mergeable
        partial state: exact squared distances and global indices (``row_offset`` added); a
        shard with fewer than k points gives all of them. ``mixscore.merge`` the shards'
        partials and ``.finalize()``: the result equals ``search`` on the whole set bit for
        bit."""
        q = self._checked_queries(queries, name)
        k = check_k(k, np.iinfo(np.int64).max, why="any positive number of neighbours")
        kk = min(k, self.n)
        idx = (self.search(q, kk, name=name).indices if kk
               else np.zeros((q.shape[0], 0), np.int64))
        return neighbors_partial(q, self.train, idx, k, self.row_offset, self.dtype)

    def search(self, queries, k: int = 2, *, name: str = "queries") -> Neighbors:
        """The k nearest training points of each query (exact; see the module docstring)."""
        q = self._checked_queries(queries, name)
        k = check_k(k, self.n)
        m = _max_abs(q)
        if m > _F64_MAX_ABS:
            raise ValueError(f"{name} has values up to {m:.3g}; squared distances would "
                             f"overflow float64 (limit |value| <= {_F64_MAX_ABS:g})")
        dtype = self.dtype
        if dtype == np.float32 and ((m + self._max_abs) ** 2 * self.dim > _F32_SAFE
                                    or not _is_float32_exact(q)):
            dtype = np.dtype(np.float64)
        self._last = self._prepare(dtype)
        dist, idx = self._last.search(q.astype(dtype, copy=False), k)
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
    first among equal distances. The GEMM stage runs in float32 when every value is exactly a
    float32 number (see NearestIndex), else in float64; the distances are exact float64 either
    way.
    """
    q = as_float_matrix(queries, queries_name)
    x = as_float_matrix(train, train_name)
    if q.shape[1] != x.shape[1]:
        raise ValueError(f"{queries_name} must have shape (M, {x.shape[1]}) to match "
                         f"{train_name} (N = {x.shape[0]}, D = {x.shape[1]}), got {describe(q)}")
    check_k(k, x.shape[0])
    index = NearestIndex(x, backend=backend, num_threads=num_threads, name=train_name)
    return index.search(q, k, name=queries_name)
