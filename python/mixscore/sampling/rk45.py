"""Adaptive Dormand-Prince RK45 on the probability-flow ODE, one step size per sample.

Each sample is integrated exactly as ``scipy.integrate.solve_ivp(fun, (T, t_end), y0,
method="RK45", rtol=rtol, atol=atol)`` would integrate it alone (same tableau, initial step,
error norm and step-size control), so results do not depend on how samples are batched.
All samples advance together, each at its own time: the denoiser is called with one time per
sample.
"""

from __future__ import annotations

import numpy as np

# Dormand-Prince 5(4) tableau as in scipy.integrate._ivp.rk.RK45
_C = np.array([0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1])
_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
]
_B = np.array([35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84])
_E = np.array([-71 / 57600, 0, 71 / 16695, -71 / 1920, 17253 / 339200, -22 / 525, 1 / 40])
_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0
_ERR_EXP = -1 / 5  # error estimator of order 4


def _rms(v):
    return np.sqrt(np.mean(v * v, axis=1))


def integrate(velocity, y0: np.ndarray, T: float, t_end: float, rtol: float, atol: float,
              max_steps: int = 100_000, on_step=None):
    """Integrates dy/dt = velocity(y, t) (t one per row) from T down to t_end for every row.

    Returns (y_end, nfev per row, accepted steps per row)."""
    y = np.array(y0, dtype=np.float64)
    n = y.shape[0]
    direction = -1.0
    t = np.full(n, float(T))
    f = velocity(y, t)
    nfev = np.ones(n, dtype=np.int64)
    nsteps = np.zeros(n, dtype=np.int64)
    # initial step (scipy.integrate._ivp.common.select_initial_step)
    interval = abs(t_end - T)
    scale = atol + np.abs(y) * rtol
    d0, d1 = _rms(y / scale), _rms(f / scale)
    h0 = np.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / np.where(d1 > 0, d1, 1.0))
    h0 = np.minimum(h0, interval)
    f1 = velocity(y + (h0 * direction)[:, None] * f, t + h0 * direction)
    nfev += 1
    d2 = _rms((f1 - f) / scale) / h0
    small = (d1 <= 1e-15) & (d2 <= 1e-15)
    h1 = np.where(small, np.maximum(1e-6, h0 * 1e-3),
                  (0.01 / np.maximum(np.maximum(d1, d2), 1e-300)) ** (1 / 5))
    h_abs = np.minimum(np.minimum(100 * h0, h1), interval)

    active = np.ones(n, dtype=bool)
    rejected = np.zeros(n, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        ti, yi, fi, hi = t[idx], y[idx], f[idx], h_abs[idx]
        min_step = 10 * np.abs(np.nextafter(ti, direction * np.inf) - ti)
        hi = np.maximum(hi, min_step)
        t_new = ti + hi * direction
        past = direction * (t_new - t_end) > 0
        t_new[past] = t_end
        h = t_new - ti  # signed
        habs = np.abs(h)
        K = [fi]
        for s in range(1, 6):
            dy = sum(K[j] * _A[s][j] for j in range(s)) * h[:, None]
            K.append(velocity(yi + dy, ti + _C[s] * h))
        y_new = yi + h[:, None] * sum(K[j] * _B[j] for j in range(6))
        f_new = velocity(y_new, ti + h)
        K.append(f_new)
        nfev[idx] += 6
        err = h[:, None] * sum(K[j] * _E[j] for j in range(7))
        scale = atol + np.maximum(np.abs(yi), np.abs(y_new)) * rtol
        err_norm = _rms(err / scale)
        accept = err_norm < 1
        with np.errstate(divide="ignore"):
            grow = np.where(err_norm == 0, _MAX_FACTOR,
                            np.minimum(_MAX_FACTOR, _SAFETY * err_norm ** _ERR_EXP))
            shrink = np.maximum(_MIN_FACTOR, _SAFETY * err_norm ** _ERR_EXP)
        grow = np.where(rejected[idx], np.minimum(1.0, grow), grow)
        acc, rej = idx[accept], idx[~accept]
        t[acc], y[acc], f[acc] = t_new[accept], y_new[accept], f_new[accept]
        h_abs[acc] = habs[accept] * grow[accept]
        rejected[acc] = False
        nsteps[acc] += 1
        h_abs[rej] = habs[~accept] * shrink[~accept]
        rejected[rej] = True
        too_small = h_abs[rej] < min_step[~accept]
        if too_small.any():
            j = rej[np.argmax(too_small)]
            raise FloatingPointError(f"rk45: the step size fell below the minimum for sample "
                                     f"{j} at t = {t[j]:.6g} (the ODE is too stiff there)")
        active[acc[t[acc] == t_end]] = False
        if not np.all(np.isfinite(y[acc])):
            raise FloatingPointError("rk45: the state became NaN/Inf")
        if nsteps.max() > max_steps:
            raise FloatingPointError(f"rk45: more than {max_steps} steps for one sample")
        if on_step is not None:
            on_step(int(n - active.sum()))
    return y, nfev, nsteps
