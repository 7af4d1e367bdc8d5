"""The backend protocol: what a backend offers is declared in ``capabilities``, never inferred
from its name.

A score backend is built once per training set, ``Backend(train, weights, row_offset=..., ...)``
(the preparation: centring, packing, norms), and offers some of

* ``stats``        ``stats(x, alpha, sigma2, want) -> dict`` of the names in ``STAT_NAMES``;
* ``partial``      ``partial(x, alpha, sigma2) -> PosteriorPartial`` (mergeable, see
                   ``mixscore.partial``);
* ``fused_sample`` ``fused_sample(x, first_sample, plan, seed, save_steps, saved, end_denoise,
                   on_step, every, rows=None) -> (x, bad step or -1)`` (the whole fixed-grid
                   sampler loop in one call, on states of the backend's arrays: NumPy for the
                   cpu backend, the device library for cuda; ``rows`` the samples' global
                   indices when not consecutive; with ``draws`` too, the naive sampler's
                   ``plan.draws`` as well);
* ``draws``        ``draws(x, alpha, sigma2, R, seed, rows, first_step) -> (M, R)`` local
                   training indices drawn from the posterior, with the Philox streams of
                   ``mixscore.covariance.posterior_draws``;
* ``cov_noise``    ``cov_noise(x, alpha, sigma2, seed, rows, step) -> (M, D)`` noise with
                   covariance Cov_w(X_0) per query, with the Philox streams of
                   ``mixscore.covariance.cov_noise``, in the backend's library;
* ``device_sample`` the sampler loop may keep its state in the backend's own array library
                   and device (``mixscore.sampling.device``): ``stats`` takes and returns arrays
                   of the namespace ``xp`` on ``device`` without host copies, float64 exists
                   there, and ``normals(seed, samples, step, dim)`` returns the samplers' Philox
                   normals (those of ``mixscore._core.philox_normals``) there. Unless the
                   backend has ``fused_sample`` too, the loop itself stays in Python, one
                   ``stats`` call per denoiser evaluation.

A nearest backend, ``Backend(train, num_threads=...)``, offers ``search``:
``search(queries, k) -> (distances, indices)`` (exact, ascending by (distance, index)).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

STATS = "stats"
PARTIAL = "partial"
FUSED_SAMPLE = "fused_sample"
DRAWS = "draws"
DEVICE_SAMPLE = "device_sample"
COV_NOISE = "cov_noise"
SEARCH = "search"


@runtime_checkable
class ScoreBackend(Protocol):
    name: str
    capabilities: frozenset
    dtype: np.dtype

    def stats(self, x: np.ndarray, alpha: np.ndarray, sigma2: np.ndarray,
              want: set) -> dict: ...

    def partial(self, x: np.ndarray, alpha: np.ndarray, sigma2: np.ndarray): ...


@runtime_checkable
class NearestBackend(Protocol):
    name: str
    capabilities: frozenset
    n_refined: int

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def has(backend, capability: str) -> bool:
    """Whether ``backend`` declares ``capability``."""
    return capability in getattr(backend, "capabilities", frozenset())
