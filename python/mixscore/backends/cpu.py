"""The C++ engine backend (mixscore._core): streaming, multithreaded, GIL released."""

from __future__ import annotations

import numpy as np

from .. import _core
from .._validation import check_threads
from ..partial import POSTERIOR_FIELDS, PosteriorPartial
from .base import DRAWS, FUSED_SAMPLE, PARTIAL, STATS
from .numpy_ref import log_weight_sum


def prepare(train: np.ndarray, weights: np.ndarray | None = None, *, num_threads: int = 0):
    """The training set prepared once in C++ (``_core.Prepared_f32`` / ``Prepared_f64``: mean,
    centred rounded copy, norms, GEMM-packed tiles, log-weights, the small-D k-d layout), shared
    by the statistics, the nearest search and the fused sampler. Picklable."""
    num_threads = check_threads(num_threads)
    cls = _core.Prepared_f32 if train.dtype == np.float32 else _core.Prepared_f64
    logw = None if weights is None else np.ascontiguousarray(np.log(weights), dtype=np.float64)
    return cls(np.ascontiguousarray(train), logw, num_threads=num_threads)


class CpuBackend:
    """The statistics, partial states and fused sampler of the C++ engine on a training set
    prepared once (``prepare``; pass ``prepared`` to share one with a nearest index)."""

    name = "cpu"
    capabilities = frozenset({STATS, PARTIAL, FUSED_SAMPLE, DRAWS})

    def __init__(
        self,
        train: np.ndarray,
        weights: np.ndarray | None,
        *,
        refine: str = "auto",
        num_threads: int = 0,
        row_offset: int = 0,
        prepared=None,
    ):
        self.dtype = train.dtype
        self.n = train.shape[0]
        self.row_offset = int(row_offset)
        self.log_weight_sum = log_weight_sum(
            None if weights is None else np.log(weights), train.shape[0]
        )
        self.options = _core.EngineOptions()
        if refine == "all":  # every entry whose error bound matters is recomputed exactly
            self.options.approx_cap = 0.0
        elif refine != "auto":
            raise ValueError(f"refine must be 'auto' or 'all', got {refine!r}")
        self.options.num_threads = check_threads(num_threads)
        self.prepared = (
            prepared if prepared is not None else prepare(train, weights, num_threads=num_threads)
        )

    @property
    def mu(self) -> np.ndarray:
        """The training mean (float64) about which the GEMM stage expands."""
        return self.prepared.mu

    def stats(self, x, alpha, sigma2, want):
        return _core.stats(self.prepared, x, alpha, sigma2, set(want), self.options)

    def partial(self, x, alpha, sigma2) -> PosteriorPartial:
        acc = self.stats(x, alpha, sigma2, {*POSTERIOR_FIELDS, "argmax"})
        return PosteriorPartial.from_arrays(
            acc,
            x=x,
            alpha=alpha,
            sigma2=sigma2,
            best=acc["argmax"] + self.row_offset,
            log_weight_sum=self.log_weight_sum,
            n=self.n,
            dtype=self.dtype,
        )

    def draws(
        self,
        x: np.ndarray,
        alpha: np.ndarray,
        sigma2: np.ndarray,
        R: int,
        seed: int,
        rows: np.ndarray,
        first_step: int = 0,
    ) -> np.ndarray:
        """(M, R) local training indices drawn from w_n(x, t) in one pass of the C++ draws
        handler (cpp/src/draws.hpp): the streams, and in float64 the indices, of the NumPy
        reference ``mixscore.covariance.posterior_draws``."""
        return _core.draws(
            self.prepared,
            np.ascontiguousarray(x, dtype=self.dtype),
            np.ascontiguousarray(alpha, dtype=np.float64),
            np.ascontiguousarray(sigma2, dtype=np.float64),
            int(R),
            (int(seed) ^ _core.DRAWS_KEY) & 0xFFFFFFFFFFFFFFFF,
            np.ascontiguousarray(rows, dtype=np.int64),
            int(first_step),
            self.options,
        )

    def fused_sample(
        self,
        x: np.ndarray,
        first_sample: int,
        plan,
        seed: int,
        save_steps: np.ndarray,
        saved: np.ndarray | None,
        end_denoise: bool,
        on_step,
        every: int,
        rows: np.ndarray | None = None,
    ) -> tuple[np.ndarray, int]:
        """The whole sampler loop in one C++ call (GIL released, Ctrl-C checked between and
        within steps; the naive sampler's posterior draws included) on a copy of x; returns
        (x, the step after which the state was NaN/Inf or -1). ``rows``: the samples' global
        indices (their noise streams) when they are not first_sample, first_sample + 1, ..."""
        x = np.array(x, dtype=x.dtype, order="C", copy=True)
        bad = _core.sample(
            self.prepared,
            x,
            plan.coef,
            plan.alpha,
            plan.sigma2,
            plan.predictor,
            seed,
            first_sample,
            end_denoise,
            np.ascontiguousarray(save_steps, dtype=np.int64),
            saved,
            self.options,
            on_step,
            every,
            plan.draws,
            plan.eb_log_c,
            plan.eb_density,
            plan.shift,
            plan.shift_scale,
            None if rows is None else np.ascontiguousarray(rows, dtype=np.int64),
        )
        return x, bad
