"""Reverse-time sampling with the exact empirical score or any user score (SCIENCE.md
section 3): ``ms.sample``.

Fixed-grid samplers are tables of per-step coefficients (``methods.py``) run fused in C++ (an
EmpiricalScore on the cpu backend), by the device loop (an EmpiricalScore on torch / CuPy
arrays, ``device.py``: the states stay on its device) or by the Python loop (any other score),
with the same arithmetic and the same Philox noise: noise of sample i at step k depends only on
(seed, i, k), never on batch size, batch split, thread count or device.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .. import _core
from .._validation import as_array, as_float_matrix, check_count, check_magnitudes
from ..backends import COV_NOISE, DRAWS, FUSED_SAMPLE, _xp, has
from ..conditional import host_labels, join_rows, take_rows
from ..empirical import EmpiricalScore
from ..schedules import Schedule
from . import rk45
from .denoisers import CallableDenoiser, DeviceDenoiser, ModelDenoiser
from .device import check_device, is_device_model, run_device
from .fold import fold_regularizers, foldable
from .loop import NonFiniteState, run_fused, run_python
from .methods import SAMPLERS, build_plan
from .variance import check_model, check_options, draw_index, sample_kde

__all__ = ["sample", "SampleResult", "SAMPLERS", "START_KINDS", "END_RULES"]

START_KINDS = ("prior", "exact")
END_RULES = ("as_is", "denoised", "no_noise_last")
GRID_KINDS = ("geometric", "log", "uniform", "exponential", "karras")


@dataclass
class SampleResult:
    """Samples and a record of exactly what produced them (SCIENCE.md section 6, item 6).

    samples      (n, D) end points (after the end rule)
    times        the time grid, T first (for rk45: [T, t_end])
    saved        (len(save_steps), n, D) states after the requested steps, or None
    save_steps   the step numbers of ``saved`` (0 = the start)
    start_index  (n,) training index each sample started from (start="exact"), else None
    nfev         score evaluations per sample (rk45: per sample array)
    settings     sampler, a2, steps, grid, t_end, T, start, end, seed, dtype, fused, ...
                 (and ``device``, e.g. 'torch on cuda:0', for a model on device arrays)

    ``samples`` and ``saved`` are NumPy arrays, except for an EmpiricalScore on torch / CuPy
    arrays (backend 'cupy' / 'array_api' / 'cuda'): then they are arrays of that library on
    the model's device, where the run kept them. The other fields are always NumPy.
    """

    samples: Any  # np.ndarray, or the device model's array type
    times: np.ndarray
    saved: Any = None
    save_steps: np.ndarray | None = None
    start_index: np.ndarray | None = None
    nfev: np.ndarray | int = 0
    settings: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        s = self.settings
        keys = ("sampler", "steps", "grid", "t_end", "start", "end", "seed")
        shown = ", ".join(f"{k}={s[k]!r}" for k in keys if k in s)
        saved = "" if self.saved is None else f", saved={tuple(self.saved.shape)}"
        dtype = _xp.numpy_dtype(self.samples.dtype)
        where = f" ({self.settings['device']})" if "device" in self.settings else ""
        return (f"SampleResult(samples={tuple(self.samples.shape)} {dtype}{where}{saved}, "
                f"{shown})")

    def save(self, path: str | os.PathLike) -> None:
        """Write the arrays and the settings to one ``.npz`` file (``SampleResult.load``; device
        arrays are copied to the host, and load as NumPy)."""
        arrays = {k: _xp.to_host(v) for k, v in (
            ("samples", self.samples), ("times", self.times), ("saved", self.saved),
            ("save_steps", self.save_steps), ("start_index", self.start_index))
            if v is not None}
        meta = {"settings": self.settings, "mixscore": _version(),
                "nfev": (self.nfev.tolist() if isinstance(self.nfev, np.ndarray)
                         else int(self.nfev))}
        np.savez(path, meta=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SampleResult:
        """Read a result written by ``save``."""
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z or "samples" not in z:
                raise ValueError(f"{str(path)!r} is not a mixscore SampleResult file (it holds "
                                 f"{list(z.keys())})")
            meta = json.loads(str(z["meta"]))
            get = (lambda k: z[k] if k in z else None)  # noqa: E731
            nfev = meta["nfev"]
            return cls(samples=z["samples"], times=z["times"], saved=get("saved"),
                       save_steps=get("save_steps"), start_index=get("start_index"),
                       nfev=np.asarray(nfev) if isinstance(nfev, list) else nfev,
                       settings=meta["settings"])

    def to_dict(self) -> dict:
        """The settings and grid as plain JSON-ready values (without the sample arrays)."""
        out = {"mixscore": _version(), "settings": copy.deepcopy(self.settings),
               "times": self.times.tolist(),
               "n": int(self.samples.shape[0]), "dim": int(self.samples.shape[1])}
        out["nfev"] = (int(self.nfev) if np.ndim(self.nfev) == 0
                       else {"mean": float(np.mean(self.nfev)), "max": int(np.max(self.nfev))})
        return out


def sample(score, n: int | None = None, *, sampler: str = "euler_maruyama", steps: int = 500,
           grid: str | ArrayLike = "geometric", t_end: float | None = None,
           start: str | ArrayLike = "prior", end: str = "as_is", a2: float | None = None,
           seed: int | np.random.Generator | None = 0, schedule: Schedule | None = None,
           dim: int | None = None, output: str | None = None, dtype=None,
           save_steps=None, batch_size: int | None = None, rtol: float = 1e-5,
           atol: float = 1e-5, fused: bool | None = None, progress: bool | None = None,
           callback: Callable | None = None, callback_every: int = 10,
           y=None, R: int | None = None, kappa=None, bandwidth: float | None = None
           ) -> SampleResult:
    """Integrate the reverse-time dynamics from T down to t_end for ``n`` samples.

    Parameters
    ----------
    score : EmpiricalScore or callable
        An ``EmpiricalScore`` (the exact empirical score; on the cpu backend the whole loop runs
        in C++; on torch / CuPy arrays with backend 'cupy' / 'array_api' / 'cuda' the states
        stay on the model's device and ``samples`` / ``saved`` come back there, fixed-grid
        samplers only, see docs/gpu.md), or any ``fn(x, t)`` returning the score for x of
        shape (m, D) (``output=`` says if it returns the denoiser, eps or v instead). ``t`` is
        a float, or for rk45 an array with one time per row. Needs ``schedule=`` and ``dim=``
        (or a start array); attributes ``schedule``, ``output`` and ``dim`` of the callable (as
        set by ``mixscore.torch.as_score``) are the defaults.
    n : int
        Number of samples (may be omitted when ``start`` is an (n, D) array).
    sampler : str
        One of ``mixscore.sampling.SAMPLERS`` (euler_maruyama, euler, heun, ddim, ddpm,
        splitting, rk45; naive, effective and kde of the generalization-through-variance
        paper, for an EmpiricalScore without regularizer, in the Python loop).
    steps, grid, t_end
        The time grid: ``steps + 1`` points of ``schedule.grid(steps, grid, t_end=t_end)``
        (grid in geometric, uniform, exponential, karras), or ``grid`` an explicit decreasing
        array of times (then ``steps`` and ``t_end`` are taken from it). The array's last
        time may be 0, as k-diffusion's ``get_sigmas_karras`` grids are: the score is never
        evaluated at 0 (explicit steps use their left end, DDIM/DDPM return the denoiser,
        Heun takes an Euler last step). rk45 and kde use only t_end (steps does not apply to
        them; they refuse a grid kind, save_steps, callback and fused, which they would
        ignore; kde takes t_end from a grid array, rk45 refuses one).
    start : "prior", "exact", (n, D) array, (n, ...) image stack or (D,) point
        "prior": N(0, sigma(T)^2 I); "exact": the noised empirical measure at T (a training
        point drawn with its weight, times alpha(T), plus sigma(T) Z; needs an
        EmpiricalScore); an array (NumPy, list or CPU tensor; for a model on device arrays
        also an array of its library, kept on the device): the start states, image stacks
        flattened per sample; a point: the same start for all samples.
        T is the first time of the grid (``schedule.T`` unless ``grid`` is an array).
    end : "as_is", "denoised" or "no_noise_last"
        Return x(t_end), the denoiser at (x(t_end), t_end), or x(t_end) with the last step
        taken without noise.
    a2 : float
        Noise level of the general family (euler_maruyama only; default 1, the reverse SDE;
        0 is the probability-flow ODE).
    seed : int, None or numpy.random.Generator
        Philox key; the noise of sample i at step k depends only on (seed, i, k). None draws
        a key from fresh entropy, a Generator draws one from its stream; the key used is
        recorded in ``settings["seed"]`` so the run can be repeated.
    save_steps : sequence of int
        Step numbers (0 = start, steps = end) whose states are returned in ``saved``.
    batch_size : int
        Samples integrated together (memory); results do not depend on it.
    rtol, atol : float
        rk45 tolerances (SciPy semantics).
    fused : bool
        Force (True) or forbid (False) the fused loop of the model's backend (the C++ loop on
        the cpu backend, the GPU loop on the cuda backend); default: fused when possible (a
        fixed-grid sampler, effective on cuda only, no callable perturbation or per-point
        Smoothing bandwidths; see ``sampling/fold.py``; labelled samples run by label).
    progress : bool
        tqdm progress bar; default on when stderr is a terminal and tqdm is installed.
    callback : callable
        ``callback(step, t)`` every ``callback_every`` steps (per batch).
    y : label or (n,) labels
        Conditional sampling with a labelled EmpiricalScore (``labels=``): the score of the
        points with sample i's label (fixed-grid samplers; the fused loop runs each label's
        samples with that label's sub-model).
    R : int
        sampler="naive" (generalization-through-variance paper, Prop. 4.1): posterior draws
        per step (default 1); each step's denoiser is the mean of R training points drawn from
        w(x, t) by exponential jumps, Philox streams (seed, sample, step)
        (``mixscore.covariance``).
        ``end="no_noise_last"`` takes the last step with the posterior mean itself.
    kappa : float or callable kappa(t)
        sampler="effective" (same paper, Prop. 3.1): Euler-Maruyama on the PF-ODE drift plus
        noise of covariance kappa g^4/4 C per unit time (Ito), C = (alpha^2/sigma^4)
        Cov_w(X_0). The naive sampler's per-step covariance is h^2 g^4/4 C / R (SCIENCE.md
        section 9: the paper's Eq. 9 absorbs a factor dt), i.e. kappa = h / R on a grid of
        step h.
    bandwidth : float
        sampler="kde": the Gaussian KDE's bandwidth h (data units); default
        sigma(t_end)/alpha(t_end). ``mixscore.sampling.variance`` describes the draws.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {list(SAMPLERS)}")
    if end not in END_RULES:
        raise ValueError(f"end must be one of {END_RULES}, got {end!r}")
    if a2 is not None and sampler != "euler_maruyama":
        raise ValueError(f"a2 applies to sampler='euler_maruyama' only (got sampler={sampler!r})")
    a2 = {"euler_maruyama": 1.0 if a2 is None else float(a2), "euler": 0.0}.get(sampler, 0.0)
    if not (np.isfinite(a2) and a2 >= 0):
        raise ValueError(f"a2 must be a finite number >= 0, got {a2}")
    seed = _as_seed(seed)
    callback_every = int(callback_every)
    if callback_every < 1:
        raise ValueError(f"callback_every must be >= 1, got {callback_every}")

    options = check_options(sampler, R, kappa, bandwidth)
    den = _denoiser(score, schedule, output, dtype, dim, start)
    device = isinstance(den, DeviceDenoiser)
    if device:
        check_device(sampler, den)
    check_model(sampler, den, fused)
    sch = den.schedule
    if sampler in ("rk45", "kde"):  # no fixed grid of steps: refuse what would be ignored
        ignored = {"grid": isinstance(grid, str) and grid != "geometric",
                   "save_steps": save_steps is not None and np.size(save_steps) > 0,
                   "callback": callback is not None, "fused": bool(fused),
                   "start": sampler == "kde" and isinstance(start, str) and start != "prior"}
        given = [k for k, v in ignored.items() if v]
        if given:
            verb = "does" if len(given) == 1 else "do"
            raise ValueError(f"sampler={sampler!r} has no fixed grid of steps: "
                             f"{' and '.join(given)} {verb} not apply to it")
    if sampler == "rk45":
        if not isinstance(grid, str):
            raise ValueError("sampler='rk45' chooses its own steps; pass t_end, not a grid array")
        ts, grid_name = np.array([sch.T, sch.t_end if t_end is None else t_end]), "adaptive"
    else:
        ts, grid_name = _grid(sch, steps, grid, t_end)
        if ts[-1] == 0 and end == "denoised":
            raise ValueError("end='denoised' needs a last time > 0 (the denoiser at t = 0 is "
                             "the state itself); a grid ending at 0 already returns the "
                             "end state, use end='as_is'")
    if batch_size is not None:
        check_count(batch_size, "batch_size")
    if sampler == "kde":  # (per-sample streams: any batch_size gives the same draws)
        n = _count(n)
        return sample_kde(den, n, ts, seed, start, end, _labels(y, n, den, sampler, start),
                          bandwidth)
    x0, start_index, start_kind = _start(start, n, den, seed, float(ts[0]))
    if isinstance(den, ModelDenoiser) and x0.shape[0]:  # (every loop: the engine's range)
        top = _xp.magnitudes(x0, spread=False)[0] if device else float(np.max(np.abs(x0)))
        check_magnitudes(x0, "start", den.dtype, spread=False, top=top)
    n, d = x0.shape
    labels = _labels(y, n, den, sampler, start)
    batch = n if batch_size is None else int(batch_size)

    settings = dict(sampler=sampler, description=SAMPLERS[sampler],
                    a2=a2 if sampler in ("euler_maruyama", "euler") else None, end=end, seed=seed,
                    start=start_kind, dtype=str(den.dtype), schedule=repr(sch), n=n, dim=d,
                    T=float(sch.T), batch_size=batch, conditional=labels is not None,
                    **{k: v if k != "kappa" or not callable(v) else repr(v)
                       for k, v in options.items()})
    if sampler == "rk45":
        return _sample_rk45(den, x0, start_index, sch, t_end, end, rtol, atol, settings,
                            progress)

    plan = build_plan(sampler, sch, ts, a2=a2, noise_last=end != "no_noise_last", **options)
    _warn_stiff(plan.rho, ts, sampler)
    save = _save_steps(save_steps, ts.size - 1)
    use_fused = _use_fused(fused, den, plan.draws is not None, plan.posterior_noise)
    settings.update(steps=int(ts.size - 1), grid=grid_name, t_end=float(ts[-1]),
                    fused=use_fused, stiffness_max=float(plan.rho.max()),
                    error_growth_max=float(np.abs(1.0 - plan.rho).max()))  # > 1: unstable
    if device:
        settings["device"] = den.where

    if use_fused:  # the regularizers in the plan (fold.py)
        fused_plan = fold_regularizers(plan, den.model.regularizers, ts)
    saved = np.empty((save.size, n, d), den.dtype) if save.size and not device else None
    out = np.empty((n, d), den.dtype) if not device else None
    parts, saved_parts = [], []  # the device loop's batches, joined on the device
    K = ts.size - 1
    bar = _progress_bar(progress, K * ((n + batch - 1) // batch), f"mixscore {sampler}")
    try:
        for b0 in range(0, n, batch):
            b1 = min(n, b0 + batch)
            done = [0]

            def on_step(k, _done=done):
                if bar is not None:
                    bar.update(k - _done[0])
                _done[0] = k
                if callback is not None and (k % callback_every == 0 or k == K):
                    callback(k, float(ts[k]))

            if labels is not None:
                den.y = labels[b0:b1]
            try:
                if use_fused:
                    every = callback_every if bar is None else 1
                    res, sv = _fused_batch(den, x0[b0:b1], b0, fused_plan, plan, ts, seed,
                                           save, end == "denoised", on_step, every,
                                           None if labels is None else labels[b0:b1])
                elif device:
                    res, sv = run_device(den, x0[b0:b1], b0, plan, ts, seed, save,
                                         end == "denoised", on_step)
                else:
                    sv = None if saved is None else np.empty((save.size, b1 - b0, d), den.dtype)
                    res = run_python(den, x0[b0:b1], b0, plan, ts, seed, save, sv,
                                     end == "denoised", on_step)
            except NonFiniteState as e:
                k, lim = e.step, den.state_limit
                what = ("NaN/Inf" if lim is None else
                        f"NaN/Inf or |x| > {lim:.3g} (where squared distances overflow "
                        f"{den.dtype})")
                raise FloatingPointError(
                    f"sampler {sampler!r} produced {what} at step {k} (t = {ts[k]:.6g} -> "
                    f"{ts[k + 1]:.6g}, stiffness rho = {plan.rho[k]:.3g}); the explicit step is "
                    "unstable there: use more steps near t_end, a geometric grid, or "
                    "sampler='ddim' / 'ddpm'") from None
            if device:
                parts.append(res)
                saved_parts.append(sv)
                continue
            out[b0:b1] = res
            if saved is not None:
                saved[:, b0:b1] = sv
    finally:
        if bar is not None:
            bar.close()
    if device:
        out = parts[0] if len(parts) == 1 else den.xp.concat(parts)
        if save.size:
            saved = (saved_parts[0] if len(saved_parts) == 1
                     else den.xp.concat(saved_parts, axis=1))
    nfev = K * (2 if plan.predictor else 1) + (1 if end == "denoised" else 0)
    return SampleResult(samples=out, times=ts, saved=saved, save_steps=save if save.size else
                        None, start_index=start_index, nfev=nfev, settings=settings)


# --- pieces ------------------------------------------------------------------------------------

def _fused_batch(den, x, b0: int, fused_plan, plan, ts, seed: int, save, end_denoised: bool,
                 on_step, every: int, labels):
    """One batch through the backend's fused loop (the C++ loop, or the GPU loop for a model
    kept there); labelled samples by label, each group with its label's sub-model and the
    samples' own streams (their global indices), so the result equals the Python loop's.
    (Progress and callbacks follow the batch's last group.) Returns (end states, saved states
    or None) in the library of the model's states."""
    model, regs = den.model, den.model.regularizers
    device = isinstance(den, DeviceDenoiser)
    if device:
        x = den.states(x)
    if labels is None:
        groups = [(model, None)]
    else:
        lg = model.label_groups
        groups = [(lg.model(model, k), rows) for k, rows in lg.query_groups(labels, x.shape[0])]
    ends, saves = [], []
    for g, (sub, rows) in enumerate(groups):
        res, svg = run_fused(sub.backend, x if rows is None else take_rows(x, rows), b0,
                             fused_plan, seed, save, end_denoised and not regs,
                             on_step if g == len(groups) - 1 else None, every,
                             rows=None if rows is None else b0 + rows)
        if end_denoised and regs:  # the regularized denoiser at t_end
            final = DeviceDenoiser(sub) if device else ModelDenoiser(sub)
            xh = final(res, ts[-1], plan.alpha[-1], plan.sigma2[-1])
            res = _xp.astype(den.xp if device else np, xh, res.dtype)
        ends.append(res)
        saves.append(svg)
    if labels is None:
        return ends[0], saves[0]
    inverse = np.argsort(np.concatenate([rows for _, rows in groups]), kind="stable")
    return (join_rows(ends, inverse),
            None if saves[0] is None else join_rows(saves, inverse, axis=1))


def _version() -> str:
    from .. import __version__

    return __version__


def _as_seed(seed) -> int:
    """The Philox key: an int in [0, 2**64); None draws one from fresh OS entropy and a NumPy
    Generator draws one from its stream (either way the int is recorded in the settings, so
    ``seed=result.settings["seed"]`` repeats the run)."""
    if seed is None:
        seed = np.random.default_rng()
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**64, dtype=np.uint64))
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, None or a numpy Generator, got "
                        f"{type(seed).__name__}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return int(seed)


def _denoiser(score, schedule, output, dtype, dim, start):
    from ..continuous import ContinuousData

    if isinstance(score, ContinuousData):  # exact scores of continuous data
        if schedule is not None and schedule is not score.schedule:
            raise ValueError("schedule= is taken from the data model; do not pass another")
        return CallableDenoiser(score.denoise, score.schedule, "denoised", np.float64,
                                score.dim)
    if isinstance(score, EmpiricalScore):
        if schedule is not None and schedule is not score.schedule:
            raise ValueError("schedule= is taken from the EmpiricalScore; do not pass another")
        if output not in (None, "score"):
            raise ValueError("output= applies to score callables only")
        if dtype is not None and np.dtype(dtype) != score.dtype:
            raise ValueError(f"dtype= must match the model's dtype {score.dtype} "
                             "(build the EmpiricalScore with dtype=... instead)")
        return DeviceDenoiser(score) if is_device_model(score) else ModelDenoiser(score)
    if not callable(score):
        raise TypeError(f"score must be an EmpiricalScore or a callable fn(x, t), got "
                        f"{type(score).__name__}")
    schedule = getattr(score, "schedule", None) if schedule is None else schedule
    output = getattr(score, "output", "score") if output is None else output
    dim = getattr(score, "dim", None) if dim is None else dim
    if not isinstance(schedule, Schedule):
        raise TypeError("a score callable needs schedule= (a mixscore Schedule, e.g. ms.VP())")
    if not isinstance(start, str):  # an array, a list or a CPU tensor
        arr = as_array(start, "start")
        if dtype is None and arr.dtype in (np.float32, np.float64):
            dtype = arr.dtype
        if dim is None and arr.ndim >= 1:  # (D,) point, (n, D) or an image stack (n, ...)
            dim = arr.shape[0] if arr.ndim == 1 else int(np.prod(arr.shape[1:]))
    dtype = np.float64 if dtype is None else dtype
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    if dim is None:
        given = (f"start={start!r}" if isinstance(start, str)
                 else f"a start of shape {np.shape(as_array(start, 'start'))}")
        raise ValueError(f"a score callable needs dim= (the data dimension) or a start array "
                         f"(n, D) / point (D,) to take it from; got dim={dim!r} and {given}")
    return CallableDenoiser(score, schedule, output, dtype, check_count(dim, "dim"))


def _start(start, n, den, seed, t0: float):
    """Start states (n, D) at time t0 in the model's dtype, the start training indices, and a
    label. For a device model (``DeviceDenoiser``) the states are arrays on its device, except
    a NumPy / list start (moved there by the device loop, batch by batch)."""
    sch, d, dtype = den.schedule, den.dim, den.dtype
    device = isinstance(den, DeviceDenoiser)
    if isinstance(start, str):
        if start not in START_KINDS:
            raise ValueError(f"start must be one of {START_KINDS}, an (n, {d}) array or a "
                             f"({d},) point; got {start!r}")
        n = _count(n)
        ids = np.arange(n, dtype=np.int64)
        sig_T, al_T = float(sch.sigma(t0)), float(sch.alpha(t0))
        if start == "prior":
            if device:
                return den.start(seed, ids, al_T, sig_T, None), None, "prior N(0, sigma(T)^2 I)"
            z = _core.philox_normals(seed, ids, _core.STEP_START_NOISE, d)
            return (sig_T * z).astype(dtype), None, "prior N(0, sigma(T)^2 I)"
        if not isinstance(den, ModelDenoiser):
            raise ValueError("start='exact' needs an EmpiricalScore (it draws training points)")
        model, kind = den.model, "exact (noised empirical measure at T)"
        idx = draw_index(model, _core.philox_uniforms(seed, ids, _core.STEP_START_INDEX))
        if device:
            return den.start(seed, ids, al_T, sig_T, idx), idx, kind
        z = _core.philox_normals(seed, ids, _core.STEP_START_NOISE, d)
        x = al_T * np.asarray(model.train[idx], np.float64) + sig_T * z  # rows only (shards)
        return x.astype(dtype), idx, kind
    native = device and _xp.is_foreign(start)  # kept in its library (moved to the device)
    arr = start if native else as_array(start, "start")
    if arr.ndim == 1:
        if tuple(arr.shape) != (d,):
            raise ValueError(f"start point must have shape ({d},), got shape "
                             f"{tuple(arr.shape)}")
        n = _count(n)
        arr = den.xp.broadcast_to(den.states(arr[None, :]), (n, d)) if native else \
            np.broadcast_to(arr, (n, d))
        kind = "fixed point"
    else:
        given = tuple(arr.shape)
        if arr.ndim > 2:  # an image stack (n, ...): one flattened row per sample
            arr = arr.reshape(arr.shape[0], -1)
        if arr.ndim != 2 or arr.shape[1] != d:
            raise ValueError(f"start array must have shape (n, {d}) (or (n, ...) with {d} "
                             f"values per sample), got shape {given}")
        if n is not None and _count(n) != arr.shape[0]:
            raise ValueError(f"n = {n} but the start array has {arr.shape[0]} rows")
        kind = "user array"
    if native:
        return den.states(arr), None, kind
    return as_float_matrix(arr, "start", dtype=dtype), None, kind


def _count(n) -> int:
    if n is None:
        raise ValueError("n (the number of samples) is required unless start is an array")
    return check_count(n, "n")


def _grid(sch: Schedule, steps, grid, t_end):
    if isinstance(grid, str):
        if grid not in GRID_KINDS:
            raise ValueError(f"grid must be one of {GRID_KINDS} or an array, got {grid!r}")
        if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)):
            raise TypeError(f"steps must be an int, got {type(steps).__name__}")
        return sch.grid(int(steps), grid, t_end=t_end), grid
    if t_end is not None:
        raise ValueError("t_end is taken from the grid array; do not pass both")
    return sch.check_grid(grid), "user array"


def _save_steps(save_steps, K: int) -> np.ndarray:
    if save_steps is None:
        return np.zeros(0, np.int64)
    s = np.asarray(save_steps)
    if s.ndim == 1 and s.size == 0:  # [] (a float64 array): nothing to save
        return np.zeros(0, np.int64)
    if s.ndim != 1 or s.dtype.kind not in "iu":
        raise ValueError(f"save_steps must be a 1-d sequence of ints, got {s!r}")
    s = np.unique(s.astype(np.int64))
    if s.size and (s[0] < 0 or s[-1] > K):
        raise ValueError(f"save_steps must lie in [0, {K}] (0 = start, {K} = end), got {s}")
    return s


def _use_fused(fused, den, draws: bool = False, posterior_noise: bool = False) -> bool:
    backend = getattr(getattr(den, "model", None), "backend", None)
    can = isinstance(den, ModelDenoiser) and has(backend, FUSED_SAMPLE)
    can = can and (not draws or has(backend, DRAWS))  # naive: the draws handler
    can = can and (not posterior_noise or has(backend, COV_NOISE))  # effective: the noise
    if fused and not can:
        raise ValueError("fused=True needs an EmpiricalScore on a backend with the "
                         "'fused_sample' capability (the cpu or cuda backend) and a "
                         "fixed-grid sampler (effective: cuda)")
    if can and not foldable(den.model.regularizers):
        if fused:
            what = ", ".join(repr(r) for r in den.model.regularizers if not foldable((r,)))
            raise ValueError(f"fused=True: the C++ loop does not apply the regularizers {what} "
                             "(a callable perturbation, per-point Smoothing bandwidths); use "
                             "fused=None or False (the Python loop)")
        can = False
    return can if fused is None else bool(fused)


def _labels(y, n: int, den, sampler: str, start):
    """The label of each sample (n,) for conditional sampling, or None."""
    if y is None:
        return None
    if not isinstance(den, ModelDenoiser) or den.model.labels is None:
        raise ValueError("y= needs an EmpiricalScore built with labels=")
    if sampler == "rk45" or isinstance(start, str) and start == "exact":
        raise ValueError("y= is not supported with sampler='rk45' or start='exact' yet")
    arr = host_labels(y)
    if arr.ndim == 0:
        arr = np.full(n, arr[()], dtype=arr.dtype)
    if arr.shape != (n,):
        raise ValueError(f"y must be one label or one per sample, shape ({n},); got shape "
                         f"{arr.shape}")
    for v in np.unique(arr):
        den.model.label_groups.group_of(v)  # an unknown label is an error before any work
    return arr


def _warn_stiff(rho, ts, sampler):
    """Warn exactly when an explicit step's stiffness rho = 1 - A lies outside [0, 2], where
    |A| > 1 (methods.py)."""
    bad = np.flatnonzero(np.abs(1.0 - rho) > 1.0)
    if bad.size:
        k = int(bad[0])
        steps = ", ".join(str(int(i)) for i in bad[:8]) + (", ..." if bad.size > 8 else "")
        warnings.warn(
            f"sampler {sampler!r}: {bad.size} explicit step(s) have stiffness rho > 2 or < 0 "
            f"(steps {steps}; first step {k}, t = {ts[k]:.6g} -> {ts[k + 1]:.6g}, stiffness rho = "
            f"{rho[k]:.3g}): such a step multiplies errors by |1 - rho| > 1 and repeated it "
            "diverges; use more steps there, a geometric grid or sampler='ddim'/'ddpm'",
            RuntimeWarning, stacklevel=3)


def _progress_bar(progress, total, desc):
    if progress is None:
        progress = sys.stderr is not None and sys.stderr.isatty()
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if progress is True:
            warnings.warn("progress=True needs tqdm (pip install tqdm)", stacklevel=3)
        return None
    return tqdm(total=total, desc=desc, unit="step")


def _sample_rk45(den, x0, start_index, sch, t_end, end, rtol, atol, settings, progress):
    t_end = float(sch.t_end if t_end is None else t_end)
    if not 0 < t_end < sch.T:
        raise ValueError(f"t_end must lie in (0, T) = (0, {sch.T}), got {t_end}")
    for name, v in (("rtol", rtol), ("atol", atol)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be > 0, got {v}")
    if end == "no_noise_last":
        raise ValueError("end='no_noise_last' applies to stochastic samplers; rk45 integrates "
                         "the ODE (use 'as_is' or 'denoised')")
    dtype = den.dtype

    def velocity(y, t):  # probability-flow ODE dx/dt = f x - g^2/2 (alpha xh - x) / sigma^2
        x = y.astype(dtype)
        xh = den.at_times(x, t)
        al, s2 = sch.alpha(t)[:, None], sch.sigma2(t)[:, None]
        return sch.f(t)[:, None] * y - 0.5 * sch.g2(t)[:, None] * (al * xh - y) / s2

    n = x0.shape[0]
    bar = _progress_bar(progress, n, "mixscore rk45")
    done = [0]

    def on_step(finished):
        if bar is not None:
            bar.update(finished - done[0])
        done[0] = finished

    try:
        y, nfev, nsteps = rk45.integrate(velocity, x0.astype(np.float64), sch.T, t_end, rtol,
                                         atol, on_step=on_step)
    finally:
        if bar is not None:
            bar.close()
    samples = y.astype(dtype)
    if end == "denoised":
        samples = den.at_times(samples, np.full(n, t_end)).astype(dtype)
        nfev = nfev + 1
    settings.update(t_end=t_end, rtol=rtol, atol=atol, fused=False, grid="adaptive",
                    steps_mean=float(nsteps.mean()), steps_max=int(nsteps.max()))
    return SampleResult(samples=samples, times=np.array([sch.T, t_end]),
                        start_index=start_index, nfev=nfev, settings=settings)
