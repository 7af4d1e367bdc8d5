"""``NearestIndex`` of a sharded training set (``mixscore.sharded``): each shard an exact
``NearestIndex`` on a Dask worker; the shards' top-k partial states merge, in the fixed tree,
into the single-machine top-k bit for bit (the order (squared distance, global index) is
total). ``NearestIndex(dask_array)`` and ``nearest(queries, dask_array)`` build one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .empirical import check_row_offset
from .nearest import NearestIndex, Neighbors, check_k
from .sharded import Shards, as_dask_train


def _nearest_partial(index, q, k, name, dtype):
    """One shard's top-k, labelled with the whole set's dtype: each shard picks its own GEMM
    stage (float32 when its values allow), but the squared distances are exact float64 either
    way, so the shards' partials merge."""
    return replace(index.partial(q, k, name=name), dtype=dtype)


class ShardedNearestIndex(NearestIndex):
    """Like ``NearestIndex`` (same parameters; ``train`` a Dask array or a list of shards)."""

    def __init__(
        self,
        train,
        *,
        backend: str = "auto",
        num_threads: int = 0,
        name: str = "train",
        row_offset: int = 0,
    ):
        if int(num_threads) < 0:
            raise ValueError(f"num_threads must be >= 0 (0 = all), got {num_threads}")
        self.name, self.row_offset = name, check_row_offset(row_offset)
        self._backend_name, self._num_threads = backend, int(num_threads)
        self.train = as_dask_train(train, name=name)
        self.dtype = self.train.dtype
        self.backend = "dask"
        self.shards = Shards(
            "nearest",
            self.train,
            None,
            self.row_offset,
            {"backend": backend, "num_threads": self._num_threads, "name": name},
        )

    def __repr__(self) -> str:
        return f"NearestIndex(N={self.n}, D={self.dim}, shards={len(self.shards)}, backend='dask')"

    @property
    def n_refined(self) -> int:
        return 0  # counted on the workers, not gathered

    def partial(self, queries, k: int = 2, *, name: str = "queries"):
        """The merged top-k partial state of all shards (global indices)."""
        q = self._checked_queries(queries, name)[0]
        k = check_k(k, np.iinfo(np.int64).max, why="any positive number of neighbours")
        return self.shards.map_merge(_nearest_partial, q, k, name, self.dtype)

    def search(self, queries, k: int = 2, *, name: str = "queries") -> Neighbors:
        """The k nearest training points of each query, as ``NearestIndex.search``."""
        q, single = self._checked_queries(queries, name)
        k = check_k(k, self.n)
        nb = self.partial(q, k, name=name).finalize()
        return Neighbors(nb.distances[0], nb.indices[0]) if single else nb
