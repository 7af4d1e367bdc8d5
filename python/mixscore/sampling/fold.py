"""Linear regularizers folded into a fixed-grid plan, for the fused C++ loop.

With ``Smoothing(h)`` and ``Tikhonov(c)`` the regularized score is

    s_r = (alpha xh - x) / denom,    denom = sigma^2 + alpha^2 h^2 + c(t)

with xh the denoiser of the mixture at variance sigma_mix^2 = sigma^2 + alpha^2 h^2 (memorization
paper Eq. 5.7; bounded-target paper Thm 3.7), and the samplers read it in denoiser form
(``mixscore.regularizers``):

    xh_r = (x + sigma^2 s_r) / alpha = p x + q xh,    q = sigma^2 / denom,  p = (1 - q) / alpha.

p and q depend on t only, so a step A x + B xh_r is (A + B p) x + (B q) xh: the fused loop runs
the engine at sigma_mix^2 with these coefficients and needs no change. The result equals the
Python loop's to rounding (the Python loop forms xh_r from the float64 accumulators).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..regularizers import Regularizer, mixture_context
from .methods import CB, CE, EH, EX, A, B, Plan


def foldable(regs: tuple[Regularizer, ...]) -> bool:
    """Whether every policy is linear in the sense above (Smoothing, Tikhonov)."""
    return all(r.linear for r in regs)


def fold_regularizers(plan: Plan, regs: tuple[Regularizer, ...], ts: np.ndarray) -> Plan:
    """``plan`` (for the grid ``ts``) with the linear policies ``regs`` folded in: the
    engine's variance sigma_mix^2 at every grid time and the coefficients of the regularized
    denoiser p x + q xh."""
    if not regs:
        return plan
    if not foldable(regs):
        raise ValueError("only Smoothing and Tikhonov fold into the fused loop")
    ctx = mixture_context(regs, np.zeros((ts.size, 1)), ts, plan.alpha, plan.sigma2)
    ctx.denom = ctx.mix_sigma2.copy()
    for r in regs:
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
    return dataclasses.replace(plan, coef=coef,
                               sigma2=np.ascontiguousarray(ctx.mix_sigma2, dtype=np.float64))
