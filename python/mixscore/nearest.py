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
from numpy.typing import ArrayLike

from ._validation import (
    as_float_matrix,
    as_points,
    check_image_shapes,
    check_magnitudes,
    check_threads,
    value_ranges,
)
from .backends import get_backend
from .backends.numpy_ref import neighbors_partial
from .empirical import check_row_offset
from .partial import NeighborsPartial
from .sharded import is_sharded

# Squared float32 dot products must stay far from overflow (max |value|^2 * D < 1e37); beyond
# this, float32 inputs are searched with the float64 kernel (same exact results).
_F32_SAFE = 1e37


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
        if isinstance(k, (bool, np.bool_)):
            raise TypeError
        k = operator.index(k)
    except TypeError:
        raise TypeError(f"k must be an integer, got {k!r}") from None
    if not low <= k <= n:
        raise ValueError(f"k must satisfy {low} <= k <= N = {n} ({why}), got k = {k}")
    return k


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
    prepare : bool
        Pack the training set now (default) or at the first search.

    Indexes pickle and copy (the prepared state is rebuilt). A Dask array or a list of shards
    (``mixscore.sharded``) gives a ``ShardedNearestIndex``: each shard searched on its worker.
    """

    image_shape: tuple | None = None  # of an image stack given as train (rows: None)

    def __new__(cls, train=None, *args, **kwargs):
        if cls is NearestIndex and is_sharded(train):
            from .sharded_nearest import ShardedNearestIndex

            cls = ShardedNearestIndex
        return super().__new__(cls)

    def __init__(self, train: ArrayLike, *, backend: str = "auto", num_threads: int = 0,
                 name: str = "train", row_offset: int = 0, prepare: bool = True):
        num_threads = check_threads(num_threads)
        self.name = name
        self.row_offset = check_row_offset(row_offset)
        self._backend_name = backend
        # the images' shape of an image stack (queries in another layout are refused)
        self.image_shape = tuple(np.shape(train)[1:]) if np.ndim(train) > 2 else None
        train = as_float_matrix(as_points(train, name)[0], name, allow_empty=True,
                                check_finite=False)
        m, spread = value_ranges(train, name, 1e-15)  # (NaN / Inf refused here)
        check_magnitudes(train, name, np.float64, spread=False, top=m)
        self.train = train
        self._max_abs = m
        self._cls = get_backend(backend, "nearest")
        self.backend = self._cls.name
        self._num_threads = int(num_threads)
        self._prepared = {}
        # float32 products of a tiny spread underflow (the bound does not cover that): float64
        f32 = (m * m * train.shape[1] <= _F32_SAFE / 4 and _is_float32_exact(train)
               and not 0.0 < spread < 1e-15)
        self.dtype = np.dtype(np.float32 if f32 else np.float64)
        self._last = self._prepare(self.dtype) if self.n and prepare else None

    @classmethod
    def from_model(cls, model, *, num_threads: int = 0) -> NearestIndex:
        """The index of an ``EmpiricalScore``'s training set, sharing the model's prepared
        (centred, packed) set when the search runs in the model's dtype on the cpu backend:
        one preparation for scoring and searching (the demo, memorization after sampling).
        The search ignores the model's weights; results equal ``NearestIndex(model.train)``."""
        index = cls(model.train, backend=model.backend.name, num_threads=num_threads,
                    row_offset=model.row_offset, prepare=False)
        shared = getattr(model.backend, "prepared", None)
        if shared is not None and index.dtype == model.dtype and index.backend == "cpu":
            index._prepared[index.dtype] = index._cls(index.train, num_threads=num_threads,
                                                      prepared=shared)
        index._last = index._prepare(index.dtype) if index.n else None
        return index

    def __repr__(self) -> str:
        shard = f", row_offset={self.row_offset}" if self.row_offset else ""
        return (f"NearestIndex(N={self.n}, D={self.dim}, dtype={self.dtype}, "
                f"backend={self.backend!r}{shard})")

    def __getstate__(self) -> dict:
        # the packed (C++) state is rebuilt on unpickling rather than serialized
        return {"train": self.train, "backend": self._backend_name,
                "num_threads": self._num_threads, "name": self.name,
                "row_offset": self.row_offset, "image_shape": self.image_shape}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["train"], backend=state["backend"],
                      num_threads=state["num_threads"], name=state["name"],
                      row_offset=state["row_offset"])
        self.image_shape = state.get("image_shape")

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

    def _checked_queries(self, queries, name: str) -> tuple[np.ndarray, bool]:
        """(queries as (M, D) rows, whether one point (D,) was given); see ``as_points``."""
        rows, single = as_points(queries, name, self.dim,
                                 f"{self.name} (N = {self.n}, D = {self.dim})")
        check_image_shapes(np.shape(queries)[1:], self.image_shape, name, self.name)
        return as_float_matrix(rows, name), single

    def partial(self, queries, k: int = 2, *, name: str = "queries") -> NeighborsPartial:
        """This training set's (or shard's) k nearest points of each query as a mergeable
        partial state: exact squared distances and global indices (``row_offset`` added); a
        shard with fewer than k points gives all of them. ``mixscore.merge`` the shards'
        partials and ``.finalize()``: the result equals ``search`` on the whole set bit for
        bit."""
        q = self._checked_queries(queries, name)[0]
        k = check_k(k, np.iinfo(np.int64).max, why="any positive number of neighbours")
        kk = min(k, self.n)
        idx = (self.search(q, kk, name=name).indices if kk
               else np.zeros((q.shape[0], 0), np.int64))
        return neighbors_partial(q, self.train, idx, k, self.row_offset, self.dtype)

    def search(self, queries: ArrayLike, k: int = 2, *, name: str = "queries") -> Neighbors:
        """The k nearest training points of each query (exact; see the module docstring).

        ``queries`` is (M, D), one point (D,) (then distances and indices have shape (k,)) or
        an image stack (M, ...) with D values per image."""
        q, single = self._checked_queries(queries, name)
        k = check_k(k, self.n)
        m = check_magnitudes(q, name, np.float64, spread=False)
        dtype = self.dtype
        if dtype == np.float32 and ((m + self._max_abs) ** 2 * self.dim > _F32_SAFE
                                    or not _is_float32_exact(q)):
            dtype = np.dtype(np.float64)
        self._last = self._prepare(dtype)
        dist, idx = self._last.search(q.astype(dtype, copy=False), k)
        return Neighbors(dist[0], idx[0]) if single else Neighbors(dist, idx)


def nearest(queries: ArrayLike, train: ArrayLike, k: int = 2, *, backend: str = "auto",
            num_threads: int = 0, queries_name: str = "queries",
            train_name: str = "train") -> Neighbors:
    """Exact k nearest training points of each query (Euclidean distance).

    Parameters
    ----------
    queries : (M, D) array, one point (D,) or an image stack (M, ...)
        A single point gives distances and indices of shape (k,).
    train : (N, D) array or an image stack (N, ...) (flattened per row)
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
    way. ``train`` may be sharded (a Dask array or a list of shards, ``mixscore.sharded``).
    """
    if is_sharded(train):
        index = NearestIndex(train, backend=backend, num_threads=num_threads, name=train_name)
        return index.search(queries, k, name=queries_name)
    x = as_float_matrix(as_points(train, train_name)[0], train_name)
    as_points(queries, queries_name, x.shape[1],  # shape errors before the preparation
              f"{train_name} (N = {x.shape[0]}, D = {x.shape[1]})")
    check_image_shapes(np.shape(queries)[1:], np.shape(train)[1:], queries_name, train_name)
    check_k(k, x.shape[0])
    index = NearestIndex(x, backend=backend, num_threads=num_threads, name=train_name)
    return index.search(queries, k, name=queries_name)
