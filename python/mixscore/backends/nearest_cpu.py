"""The C++ exact nearest-neighbour search (mixscore._core.nearest): tiled GEMM stage with a
rigorous error bound, exact float64 refinement of the candidates, running top-k; GIL released."""

from __future__ import annotations

import numpy as np

from .. import _core
from .base import SEARCH
from .cpu import prepare


class CpuNearest:
    """Searches a training set prepared once (``backends.cpu.prepare``, shared with the score
    backend when given as ``prepared``); search() is repeatable."""

    name = "cpu"
    capabilities = frozenset({SEARCH})

    def __init__(self, train: np.ndarray, *, num_threads: int = 0, prepared=None):
        self.train = train
        self.prepared = (
            prepared if prepared is not None else prepare(train, num_threads=num_threads)
        )
        self.options = _core.EngineOptions()
        self.options.num_threads = int(num_threads)
        self.n_refined = 0

    def search(self, queries: np.ndarray, k: int):
        dist, idx, self.n_refined = _core.nearest(self.prepared, queries, int(k), self.options)
        return dist, idx
