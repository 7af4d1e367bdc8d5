"""The runners of a fixed-grid plan: the fused loop of a backend (the C++ loop of the cpu
backend, the GPU loop of the cuda backend), the Python loop on NumPy states (any denoiser) and
the device loop (``device.py``: a model on torch / CuPy arrays, the states on its device).
The Python and device loops are one function, ``integrate``, written against an array
namespace; all of them perform the same float64 operations in the same order and draw the same
Philox noise, so their results agree to rounding of the score."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import _core
from ..backends import _xp
from .methods import CB, CE, EH, EX, A, B, Plan, S


class NonFiniteState(FloatingPointError):
    """An explicit step produced NaN/Inf or a state beyond the denoiser's range (the step was
    unstable)."""

    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


def integrate(xp, den, x, ids: np.ndarray, plan: Plan, ts: np.ndarray, seed: int,
              normals: Callable[[int], object], save_steps: np.ndarray,
              store: Callable[[int, object], None], end_denoise: bool,
              on_step: Callable[[int], None]):
    """The plan's steps on the states ``x`` (n, D), arrays of namespace ``xp`` (NumPy itself,
    or an array-API namespace): ``den(x, t, alpha, sigma2)`` gives the float64 denoiser in that
    namespace, ``normals(k)`` the Philox normals of step k for the samples ``ids``,
    ``store(i, x)`` keeps the state after step ``save_steps[i]``. Returns the end state."""
    dtype = x.dtype
    save_at = {int(k): i for i, k in enumerate(save_steps)}
    if 0 in save_at:
        store(save_at[0], x)
    for k in range(plan.coef.shape[0]):
        c = plan.coef[k].tolist()  # Python floats: they scale arrays of any library alike
        den.step = k
        if plan.draws is not None and plan.draws[k] > 0:  # naive: mean of R posterior draws
            xh = den.draws_mean(x, ts[k], int(plan.draws[k]), seed, ids, k)
        else:
            xh = den(x, ts[k], plan.alpha[k], plan.sigma2[k])
        x64 = _xp.astype(xp, x, xp.float64)
        v = c[A] * x64 + c[B] * xh
        if plan.predictor and (c[CE] != 0.0 or c[CB] != 0.0):  # Heun (not its Euler last step)
            xe = _xp.astype(xp, c[EX] * x64 + c[EH] * xh, dtype)
            xhb = den(xe, ts[k + 1], plan.alpha[k + 1], plan.sigma2[k + 1])
            v = v + c[CE] * _xp.astype(xp, xe, xp.float64) + c[CB] * xhb
        if c[S] != 0.0:
            z = den.cov_noise(x, ts[k], seed, ids, k) if plan.posterior_noise else normals(k)
            v = v + c[S] * z
        with np.errstate(over="ignore", invalid="ignore"):
            x = _xp.astype(xp, v, dtype)
        # NaN/Inf or beyond the engine's range, as the fused loops (on a device: one scalar)
        lim = den.state_limit
        if not bool(xp.all(xp.isfinite(x) if lim is None else xp.abs(x) <= lim)):
            raise NonFiniteState(k)
        if k + 1 in save_at:
            store(save_at[k + 1], x)
        on_step(k + 1)
    den.step = None
    if end_denoise:
        x = _xp.astype(xp, den(x, ts[-1], plan.alpha[-1], plan.sigma2[-1]), dtype)
    return x


def run_python(den, x: np.ndarray, first_sample: int, plan: Plan, ts: np.ndarray, seed: int,
               save_steps: np.ndarray, saved: np.ndarray | None, end_denoise: bool,
               on_step) -> np.ndarray:
    """Integrates the batch ``x`` (n, D, NumPy) through the plan and returns the end state;
    the states after ``save_steps`` are written into ``saved``."""
    n, d = x.shape
    ids = np.arange(first_sample, first_sample + n, dtype=np.int64)

    def store(i, state):
        saved[i] = state

    return integrate(np, den, x, ids, plan, ts, seed,
                     lambda k: _core.philox_normals(seed, ids, k, d), save_steps, store,
                     end_denoise, on_step)


def run_fused(backend, x, first_sample: int, plan: Plan, seed: int, save_steps: np.ndarray,
              end_denoise: bool, on_step, every: int, rows: np.ndarray | None = None):
    """The same loop in one backend call (a backend with the ``fused_sample`` capability: the
    C++ loop on NumPy states, the GPU loop on the states of a model kept there); ``rows``: the
    samples' global indices when not consecutive from first_sample. Returns (end states, the
    states after ``save_steps`` (len(save_steps), n, D) or None), arrays of x's library."""
    saved = None
    if save_steps.size:
        shape = (save_steps.size, *x.shape)
        if _xp.is_foreign(x):
            xp, device = _xp.namespace(x)
            saved = xp.empty(shape, dtype=x.dtype, device=device)
        else:
            saved = np.empty(shape, x.dtype)
    x, bad = backend.fused_sample(x, first_sample, plan, seed, save_steps, saved, end_denoise,
                                  on_step, every, rows=rows)
    if bad >= 0:
        raise NonFiniteState(bad)
    return x, saved
