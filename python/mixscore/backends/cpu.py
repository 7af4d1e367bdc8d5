"""The C++ engine backend (mixscore._core): streaming, multithreaded, GIL released."""

from __future__ import annotations

import numpy as np

from .. import _core


def prepare(train: np.ndarray, weights: np.ndarray | None = None, *, num_threads: int = 0):
    """The training set prepared once in C++ (``_core.Prepared_f32`` / ``Prepared_f64``: mean,
    centred rounded copy, norms, GEMM-packed tiles, log-weights, the small-D k-d layout), shared
    by the statistics, the nearest search and the fused sampler. Picklable."""
    if int(num_threads) < 0:
        raise ValueError(f"num_threads must be >= 0 (0 = all), got {num_threads}")
    cls = _core.Prepared_f32 if train.dtype == np.float32 else _core.Prepared_f64
    logw = None if weights is None else np.ascontiguousarray(np.log(weights), dtype=np.float64)
    return cls(np.ascontiguousarray(train), logw, num_threads=int(num_threads))


class CpuBackend:
    """The statistics of the C++ engine on a prepared training set (``prepare``)."""

    name = "cpu"

    def __init__(
        self,
        train: np.ndarray,
        weights: np.ndarray | None,
        *,
        refine: str = "auto",
        num_threads: int = 0,
        prepared=None,
    ):
        self.dtype = train.dtype
        self.options = _core.EngineOptions()
        if refine == "all":  # every entry whose error bound matters is recomputed exactly
            self.options.approx_cap = 0.0
        elif refine != "auto":
            raise ValueError(f"refine must be 'auto' or 'all', got {refine!r}")
        if int(num_threads) < 0:
            raise ValueError(f"num_threads must be >= 0 (0 = all), got {num_threads}")
        self.options.num_threads = int(num_threads)
        self.prepared = (
            prepared if prepared is not None else prepare(train, weights, num_threads=num_threads)
        )
        self.run_sampler = _core.sample

    @property
    def mu(self) -> np.ndarray:
        """The training mean (float64) about which the GEMM stage expands."""
        return self.prepared.mu

    def stats(self, x, alpha, sigma2, want):
        return _core.stats(self.prepared, x, alpha, sigma2, set(want), self.options)
