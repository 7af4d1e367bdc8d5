"""The C++ engine backend (mixscore._core): streaming, multithreaded, GIL released."""

from __future__ import annotations

import numpy as np

from .. import _core
from ..partial import POSTERIOR_FIELDS, PosteriorPartial
from .base import FUSED_SAMPLE, PARTIAL, STATS
from .numpy_ref import log_weight_sum


class CpuBackend:
    """Prepares the training set once (centred copy, norms; for small D the engine's tiled copy)."""

    name = "cpu"
    capabilities = frozenset({STATS, PARTIAL, FUSED_SAMPLE})

    def __init__(self, train: np.ndarray, weights: np.ndarray | None, *, refine: str = "auto",
                 num_threads: int = 0, row_offset: int = 0):
        self.dtype = train.dtype
        self.X = train
        self.mu = train.mean(axis=0, dtype=np.float64)
        self.Xc = np.ascontiguousarray(train - self.mu, dtype=train.dtype)
        self.norm2c = np.einsum("nd,nd->n", self.Xc, self.Xc, dtype=np.float64)
        self.normc = np.sqrt(self.norm2c)
        self.logw = None if weights is None else np.ascontiguousarray(np.log(weights))
        self.row_offset = int(row_offset)
        self.log_weight_sum = log_weight_sum(self.logw, train.shape[0])
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

    def partial(self, x, alpha, sigma2) -> PosteriorPartial:
        acc = self.stats(x, alpha, sigma2, {*POSTERIOR_FIELDS, "argmax"})
        return PosteriorPartial.from_arrays(
            acc, x=x, alpha=alpha, sigma2=sigma2, best=acc["argmax"] + self.row_offset,
            log_weight_sum=self.log_weight_sum, n=self.X.shape[0], dtype=self.dtype)

    def fused_sample(self, x: np.ndarray, first_sample: int, plan, seed: int,
                     save_steps: np.ndarray, saved: np.ndarray | None, end_denoise: bool,
                     on_step, every: int) -> tuple[np.ndarray, int]:
        """The whole sampler loop in one C++ call (GIL released, Ctrl-C checked between and
        within steps) on a copy of x; returns (x, the step after which the state was NaN/Inf
        or -1)."""
        x = np.array(x, dtype=x.dtype, order="C", copy=True)
        bad = self.run_sampler(self.prepared, x, plan.coef, plan.alpha, plan.sigma2,
                               plan.predictor, seed, first_sample, end_denoise,
                               np.ascontiguousarray(save_steps, dtype=np.int64), saved,
                               self.options, on_step, every)
        return x, bad
