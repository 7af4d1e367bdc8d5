"""The regularizers of a model in a fixed-grid plan, for the fused C++ loop.

The regularized score (``mixscore.regularizers``) is

    s_r = m(x) (alpha xh - x) / denom + e,    denom = sigma^2 + alpha^2 h^2 + c_tik(t),

with xh the denoiser of the mixture at variance sigma_mix^2 = sigma^2 + alpha^2 h^2 (Smoothing;
memorization paper Eq. 5.7 for Tikhonov, bounded-target paper Thm 3.7), m = min(1, K(x) / c_eb)
the Empirical Bayes factor (Eq. 5.12) and e a constant perturbation (Pidstrigach). The samplers
read it in denoiser form:

    xh_r = (x + sigma^2 s_r) / alpha = p x + q xh',    q = sigma^2 / denom,  p = (1 - q) / alpha,
    xh'  = m xh + (1 - m) x / alpha + (denom / alpha) e.

p and q depend on t only, so a step A x + B xh_r is (A + B p) x + (B q) xh': Smoothing and
Tikhonov fold into the coefficients and the engine runs at sigma_mix^2; the per-sample part xh'
(Empirical Bayes needs the pass's log-density, the perturbation a vector) is applied by the C++
loop after each denoiser call (``SamplerPlan``: eb_log_c, shift). A callable perturbation and
per-point Smoothing bandwidths stay in the Python loop. The result equals the Python loop's to
rounding (the Python loop forms xh_r from the float64 accumulators).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..regularizers import (
    EmpiricalBayes,
    Perturbation,
    Regularizer,
    _level_at,
    mixture_context,
)
from .methods import CB, CE, EH, EX, A, B, Plan


def foldable(regs: tuple[Regularizer, ...]) -> bool:
    """Whether the fused loop applies every policy (all but a callable perturbation and
    per-point Smoothing bandwidths)."""
    return all(r.linear or isinstance(r, EmpiricalBayes)
               or (isinstance(r, Perturbation) and not callable(r.e)) for r in regs)


def fold_regularizers(plan: Plan, regs: tuple[Regularizer, ...], ts: np.ndarray) -> Plan:
    """``plan`` (for the grid ``ts``) with the policies ``regs`` in it: the engine's variance
    sigma_mix^2 at every grid time, the coefficients of p x + q xh', and the per-sample part."""
    if not regs:
        return plan
    if not foldable(regs):
        raise ValueError("a callable perturbation or per-point Smoothing bandwidths do not "
                         "fold into the fused loop")
    ctx = mixture_context(regs, np.zeros((ts.size, 1)), ts, plan.alpha, plan.sigma2)
    ctx.denom = ctx.mix_sigma2.copy()
    for r in regs:
        if r.linear:
            r.apply(ctx)
    q = plan.sigma2 / ctx.denom
    p = (1.0 - q) / plan.alpha
    coef = plan.coef.copy()
    qa, pa, qb, pb = q[:-1], p[:-1], q[1:], p[1:]
    coef[:, A] += coef[:, B] * pa
    coef[:, B] *= qa
    coef[:, EX] += coef[:, EH] * pa
    coef[:, EH] *= qa
    coef[:, CE] += coef[:, CB] * pb
    coef[:, CB] *= qb
    if not np.all(np.isfinite(coef)):
        raise ValueError("the regularized step coefficients are not finite on this grid "
                         "(a regularizer level c(t) = 0 where sigma(t) = 0?)")
    extra = {"coef": coef, "sigma2": np.ascontiguousarray(ctx.mix_sigma2, dtype=np.float64)}
    for r in regs:
        if isinstance(r, EmpiricalBayes):
            with np.errstate(divide="ignore"):  # c = 0: log c = -inf, the plain score
                extra["eb_log_c"] = np.log(_level_at(r.c, ts, ts.size, "c", "EmpiricalBayes"))
            extra["eb_density"] = r.units == "density"
        elif isinstance(r, Perturbation):
            extra["shift"] = np.ascontiguousarray(r.e, dtype=np.float64)
            extra["shift_scale"] = ctx.denom / plan.alpha
    return dataclasses.replace(plan, **extra)
