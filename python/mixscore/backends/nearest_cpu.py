"""The C++ exact nearest-neighbour kernel (mixscore._core.nearest_*): tiled GEMM stage with a
rigorous error bound, exact float64 refinement of the candidates, running top-k; GIL released."""

from __future__ import annotations

import numpy as np

from .. import _core
from .base import SEARCH


class CpuNearest:
    """Packs the training set once (centred, transposed tiles, norms); search() is repeatable."""

    name = "cpu"
    capabilities = frozenset({SEARCH})

    def __init__(self, train: np.ndarray, *, num_threads: int = 0):
        self.train = train
        self.num_threads = int(num_threads)
        self.mu = train.mean(axis=0, dtype=np.float64)
        f32 = train.dtype == np.float32
        prepare = _core.nearest_prepare_f32 if f32 else _core.nearest_prepare_f64
        self._search = _core.nearest_search_f32 if f32 else _core.nearest_search_f64
        self.packed, self.norm2, self.norm = prepare(train, self.mu, self.num_threads)
        self.n_refined = 0

    def search(self, queries: np.ndarray, k: int):
        dist, idx, self.n_refined = self._search(self.train, self.packed, self.norm2, self.norm,
                                                 self.mu, queries, int(k), self.num_threads)
        return dist, idx
