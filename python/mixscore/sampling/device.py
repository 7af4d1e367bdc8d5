"""The sampler loop on the device of a model whose training set stays in its array library
(a torch tensor or CuPy array on the ``cupy`` / ``array_api`` or ``cuda`` backend, the
``device_sample`` capability; docs/gpu.md, "Sampling on the GPU").

The states x live in that library and device for the whole run: every step is the Python
loop's arithmetic (``loop.integrate``, the same float64 operations in the same order) run
through the library's array-API namespace, the denoiser is the backend's ``stats`` on the
device, and the noise of sample i at step k is the Philox stream (seed, i, k) of the CPU
(drawn on the GPU by the cuda backend, else on the host and moved once per step). So samples
equal the fused CPU loop's to rounding of the denoiser. What crosses to the host per step: the
per-query noise levels (host -> device, M floats), one finiteness flag (device -> host), and on
the fallback the step's noise (host -> device). Labels (``y=``) and regularizers act as in the
Python loop: each step's denoiser is the model's (conditional, regularized) statistics on the
device.

The posterior samplers ``naive`` and ``effective`` keep their states on the device too; on the
fallback their posterior draws and covariance noise come from the host
(``mixscore.covariance``, the streams of the CPU paths, on a host copy of the training set): the
queries go to the host and the draws or noise back once per step. Not on the device (refused by
name): the adaptive ``rk45`` (per-sample control) and the ``kde`` baseline.

On the ``cuda`` backend the fixed-grid samplers run the fused GPU loop instead
(``CudaBackend.fused_sample``, cuda/sampler.cu: the whole run in one call, the naive sampler's
draws and the effective sampler's noise by their kernels); ``fused=False`` asks for the loop
of this module there (its draws and noise then come from those kernels too).
"""

from __future__ import annotations

import numpy as np

from ..backends import DEVICE_SAMPLE, _xp, has
from ..empirical import EmpiricalScore
from .denoisers import DeviceDenoiser
from .loop import integrate
from .methods import Plan

HOST_ONLY = ("rk45", "kde")


def is_device_model(score) -> bool:
    """Whether ``score`` samples on its device: an EmpiricalScore whose training set is a torch
    tensor / CuPy array kept by a backend with the ``device_sample`` capability (NumPy data on
    the array-API backend is a host model: it samples by the NumPy loop)."""
    return (isinstance(score, EmpiricalScore) and _xp.is_foreign(score.train)
            and has(score.backend, DEVICE_SAMPLE))


def check_device(sampler: str, den: DeviceDenoiser) -> None:
    """What the device loops do not run, refused before any work."""
    if sampler in HOST_ONLY:
        raise ValueError(
            f"sampler={sampler!r} does not run on the device: a model on {den.where} samples "
            "with the fixed-grid samplers (euler_maruyama, euler, heun, ddim, ddpm, splitting, "
            "naive, effective); for rk45 or kde build the model from NumPy data "
            "(backend='cpu')")


def run_device(den: DeviceDenoiser, x, first_sample: int, plan: Plan, ts: np.ndarray,
               seed: int, save_steps: np.ndarray, end_denoise: bool, on_step):
    """Integrates the batch ``x`` (n, D: NumPy or the model's library; moved to the device
    once) through the plan. Returns (end states, saved states (len(save_steps), n, D) or None),
    arrays of the model's library on its device."""
    xp = den.xp
    x = den.states(x)
    ids = np.arange(first_sample, first_sample + x.shape[0], dtype=np.int64)
    kept = [None] * save_steps.size

    def store(i, state):
        kept[i] = state  # states are never written in place: a reference is a snapshot

    x = integrate(xp, den, x, ids, plan, ts, seed, lambda k: den.normals(seed, ids, k),
                  save_steps, store, end_denoise, on_step)
    return x, (xp.stack(kept) if kept else None)
