"""The two runners of a fixed-grid plan: the fused C++ loop (EmpiricalScore on the cpu
backend) and the Python loop (any denoiser). Both perform the same float64 operations in the
same order and draw the same Philox noise, so their results agree to rounding of the score."""

from __future__ import annotations

import numpy as np

from .. import _core
from .methods import CB, CE, EH, EX, A, B, Plan, S


class NonFiniteState(FloatingPointError):
    """An explicit step produced NaN/Inf (the step was unstable)."""

    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


def run_python(den, x: np.ndarray, first_sample: int, plan: Plan, ts: np.ndarray, seed: int,
               save_steps: np.ndarray, saved: np.ndarray | None, end_denoise: bool,
               on_step) -> np.ndarray:
    """Integrates the batch ``x`` (n, D) through the plan and returns the end state."""
    n, d = x.shape
    ids = np.arange(first_sample, first_sample + n, dtype=np.int64)
    save_at = {int(k): i for i, k in enumerate(save_steps)}
    if 0 in save_at:
        saved[save_at[0]] = x
    for k in range(plan.coef.shape[0]):
        c = plan.coef[k]
        den.step = k
        if plan.draws is not None and plan.draws[k] > 0:  # naive: mean of R posterior draws
            xh = den.draws_mean(x, ts[k], int(plan.draws[k]), seed, ids, k)
        else:
            xh = den(x, ts[k], plan.alpha[k], plan.sigma2[k])
        x64 = x.astype(np.float64)
        v = c[A] * x64 + c[B] * xh
        if plan.predictor and (c[CE] != 0.0 or c[CB] != 0.0):  # Heun (not its Euler last step)
            xe = (c[EX] * x64 + c[EH] * xh).astype(x.dtype)
            xhb = den(xe, ts[k + 1], plan.alpha[k + 1], plan.sigma2[k + 1])
            v = v + c[CE] * xe.astype(np.float64) + c[CB] * xhb
        if c[S] != 0.0:
            z = (den.cov_noise(x, ts[k], seed, ids, k) if plan.posterior_noise
                 else _core.philox_normals(seed, ids, k, d))
            v = v + c[S] * z
        with np.errstate(over="ignore", invalid="ignore"):
            x = v.astype(x.dtype)
        if not np.all(np.isfinite(x)):
            raise NonFiniteState(k)
        if k + 1 in save_at:
            saved[save_at[k + 1]] = x
        on_step(k + 1)
    den.step = None
    if end_denoise:
        x = den(x, ts[-1], plan.alpha[-1], plan.sigma2[-1]).astype(x.dtype)
    return x


def run_fused(backend, x: np.ndarray, first_sample: int, plan: Plan, seed: int,
              save_steps: np.ndarray, saved: np.ndarray | None, end_denoise: bool,
              on_step, every: int, rows: np.ndarray | None = None) -> np.ndarray:
    """The same loop in one backend call (a backend with the ``fused_sample`` capability);
    ``rows``: the samples' global indices when not consecutive from first_sample."""
    x, bad = backend.fused_sample(x, first_sample, plan, seed, save_steps, saved, end_denoise,
                                  on_step, every, rows=rows)
    if bad >= 0:
        raise NonFiniteState(bad)
    return x
