"""The C++ engine backend (mixscore._core): streaming, multithreaded, GIL released."""

from __future__ import annotations

import numpy as np

from .. import _core


class CpuBackend:
    """Prepares the training set once (centred copy, norms; for small D the engine's tiled copy)."""

    name = "cpu"

    def __init__(self, train: np.ndarray, weights: np.ndarray | None, *, refine: str = "auto",
                 num_threads: int = 0):
        self.dtype = train.dtype
        self.X = train
        self.mu = train.mean(axis=0, dtype=np.float64)
        self.Xc = np.ascontiguousarray(train - self.mu, dtype=train.dtype)
        self.norm2c = np.einsum("nd,nd->n", self.Xc, self.Xc, dtype=np.float64)
        self.normc = np.sqrt(self.norm2c)
        self.logw = None if weights is None else np.ascontiguousarray(np.log(weights))
        self.options = _core.EngineOptions()
        if refine == "all":  # every entry whose error bound matters is recomputed exactly
            self.options.approx_cap = 0.0
        elif refine != "auto":
            raise ValueError(f"refine must be 'auto' or 'all', got {refine!r}")
        if int(num_threads) < 0:
            raise ValueError(f"num_threads must be >= 0 (0 = all), got {num_threads}")
        self.options.num_threads = int(num_threads)
        suffix = "f32" if train.dtype == np.float32 else "f64"
        self.prepared = getattr(_core, f"Train_{suffix}")(
            self.X, self.Xc, self.norm2c, self.normc, self.logw, self.mu)
        self._stats = getattr(_core, f"stats_{suffix}")
        self.run_sampler = getattr(_core, f"sample_{suffix}")

    def stats(self, x, alpha, sigma2, want):
        return self._stats(self.prepared, x, alpha, sigma2, set(want), self.options)
