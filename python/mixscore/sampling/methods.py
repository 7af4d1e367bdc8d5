"""The fixed-grid samplers as tables of per-step coefficients (SCIENCE.md section 3).

Every method's step from t_a = t[k] down to t_b = t[k+1] (h = t_a - t_b > 0) is linear in the
state x, the denoiser xh = E[X_0 | x, t_a], for Heun a predictor xe and its denoiser xhb at t_b,
and the noise z:

    xe     = Ex x + Eh xh                                   (Heun only)
    x_next = A x + B xh + Ce xe + Cb xhb + S z

with the score written in denoiser form, s = (alpha xh - x) / sigma^2 (SCIENCE.md section 6,
item 5). The same table drives the C++ loop (cpp/src/sampler.cpp) and the Python loop.

Stiffness: with the denoiser frozen over a step (as it is near t_end, where the posterior is a
hard assignment), an explicit step maps x to A x + (terms without x), so a deviation is
multiplied by A = 1 - rho: rho = 1 - A is the step's stiffness, and rho > 2 (or < 0) means
|A| > 1, the error grows (and repeated, diverges). For Euler-Maruyama rho = h (f + (1 + a2)/2
g^2 / sigma^2) at the step's left end, not g^2 h / sigma^2: the drift f x (negative for VP)
cancels part of the score's pull, half of it near T where sigma ~ 1. For Heun the factor is the
whole step's, A + Ce Ex (the corrector's pull at the right end, where sigma is smaller, can make
it unstable where the predictor is not).

Grids may end at t = 0 (k-diffusion, score_sde): the score is never evaluated there. Explicit
methods use only the left end of a step anyway; DDIM and DDPM to t = 0 return the denoiser at
the left end (their coefficients give A = 0, B = alpha(0)); Heun takes an Euler last step, as
k-diffusion's ``sample_heun`` does.

The samplers of the generalization-through-variance paper reuse the Euler PF-ODE table and
change what the loop feeds it (Python loop only): ``naive`` replaces xh by the mean of R
posterior draws (``Plan.draws``), ``effective`` draws z from N(0, Cov_w(X_0)) instead of
N(0, I) (``Plan.posterior_noise``).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..schedules import Schedule

A, B, S, EX, EH, CE, CB = range(7)
NUM_COEF = 7

SAMPLERS = {
    "euler_maruyama": "reverse SDE, Euler-Maruyama; with a2 the general family "
                      "dx = [f x - (1 + a2)/2 g^2 s] dt + sqrt(a2) g dB (memorization paper "
                      "Eq. 2.10); a2 = 1 (default) is the reverse SDE",
    "euler": "probability-flow ODE (a2 = 0), explicit Euler",
    "heun": "probability-flow ODE, Heun's predictor-corrector (2 score calls per step)",
    "ddim": "deterministic exponential integrator, denoiser frozen over a step: "
            "x_b = alpha_b xh + (sigma_b / sigma_a)(x_a - alpha_a xh) (exact for one Gaussian)",
    "ddpm": "stochastic exponential integrator: the exact Gaussian-bridge (DDPM posterior) "
            "step q(x_b | x_a, x_0 = xh)",
    "splitting": "the bounded-target paper's splitting scheme (its Eq. 23/25) for VP/OU "
                 "schedules: x <- x + h beta s(x, t_a), then x <- e^{beta h/2} x + "
                 "sqrt(1 - e^{-beta h}) z",
    "rk45": "adaptive Dormand-Prince RK45 on the probability-flow ODE, per sample, with "
            "SciPy solve_ivp's step-size control (rtol, atol)",
    "naive": "generalization-through-variance paper, Prop. 4.1: PF-ODE Euler steps with the "
             "denoiser replaced at each step by the mean of R fresh posterior draws "
             "(exponential jumps); R -> infinity is sampler='euler'",
    "effective": "generalization-through-variance paper, Prop. 3.1 (Eq. 8, white V): the "
                 "Ito SDE dx = PF-ODE drift dt + noise of covariance kappa g^4/4 C dt, "
                 "C = (alpha^2/sigma^4) Cov_w(X_0); Euler-Maruyama; kappa = 0 is 'euler'",
    "kde": "the kernel-density baseline (generalization-through-variance paper, Fig. 2): "
           "direct draws X_n + h Z from the Gaussian KDE of the training set",
}
# samplers that need the posterior of an EmpiricalScore (draws or Cov_w noise), Python loop
POSTERIOR_SAMPLERS = ("naive", "effective")


@dataclass
class Plan:
    """Coefficients for one grid, plus what the warnings and the report need."""

    coef: np.ndarray       # (K, NUM_COEF) float64
    alpha: np.ndarray      # (K + 1,)
    sigma2: np.ndarray     # (K + 1,)
    predictor: bool        # Heun: a second denoiser call per step
    rho: np.ndarray        # (K,) stiffness of an explicit step (0 for exponential integrators)
    draws: np.ndarray | None = None  # (K,) posterior draws replacing xh at each step (0: xh)
    posterior_noise: bool = False    # z ~ N(0, Cov_w(X_0)) instead of N(0, I)
    # the regularizers the fused loop applies per sample (fold.py; C++ SamplerPlan)
    eb_log_c: np.ndarray | None = None     # (K + 1,) log c of Empirical Bayes
    eb_density: bool = False               # c compared with the density, not the kernel sum
    shift: np.ndarray | None = None        # (D,) a constant perturbation e
    shift_scale: np.ndarray | None = None  # (K + 1,) its factor denom / alpha


def build_plan(method: str, schedule: Schedule, ts: np.ndarray, *, a2: float = 1.0,
               noise_last: bool = True, R: int = 1, kappa: float | Callable = 0.0) -> Plan:
    """Per-step coefficients of ``method`` on the decreasing grid ``ts`` (``R``: naive's
    draws per step; ``kappa``: effective's noise level, a number or kappa(t))."""
    al, s2 = schedule.alpha(ts), schedule.sigma2(ts)
    f, g2 = schedule.f(ts), schedule.g2(ts)
    to_zero = ts[-1] == 0  # sigma(0) may be 0: only ever used as a step's right end
    if not (np.all(np.isfinite(al)) and np.all(np.isfinite(s2)) and np.all(s2[:-1] > 0)
            and (s2[-1] >= 0 if to_zero else s2[-1] > 0)
            and np.all(np.isfinite(f)) and np.all(np.isfinite(g2))):
        raise ValueError("the schedule gives non-finite alpha, f, g or sigma <= 0 on the grid")
    K = ts.size - 1
    h = ts[:-1] - ts[1:]
    at, bt, sa, sb = al[:-1], al[1:], s2[:-1], s2[1:]
    fa, ga2 = f[:-1], g2[:-1]
    coef = np.zeros((K, NUM_COEF))
    rho = np.zeros(K)
    draws = None
    if method in POSTERIOR_SAMPLERS:
        a2 = 0.0  # both integrate the PF-ODE with first-order Euler steps (paper, Eq. 49)
    if method in ("euler_maruyama", "euler") + POSTERIOR_SAMPLERS:
        c = 0.5 * (1.0 + a2)
        coef[:, A] = 1.0 - h * fa - h * c * ga2 / sa
        coef[:, B] = h * c * ga2 * at / sa
        coef[:, S] = np.sqrt(a2 * h * ga2)
        rho = 1.0 - coef[:, A]
        if method == "naive":
            if K * R >= 2**32:
                raise ValueError(f"sampler='naive': steps * R must be < 2**32 (the Philox "
                                 f"step counter), got {K} * {R}")
            draws = np.full(K, R, np.int64)
            if not noise_last:
                draws[-1] = 0  # the last step with the posterior mean itself
        elif method == "effective":
            # x += drift h + sqrt(kappa h) (g^2/2) (alpha/sigma^2) xi, xi ~ N(0, Cov_w(X_0)):
            # added covariance kappa h g^4/4 C per step (Ito, C at the step's start)
            coef[:, S] = np.sqrt(kappa_at(kappa, ts[:-1]) * h) * 0.5 * ga2 * at / sa
    elif method == "heun":
        p_a, q_a = fa + 0.5 * ga2 / sa, 0.5 * ga2 * at / sa      # velocity v = p x - q xh
        with np.errstate(divide="ignore", invalid="ignore"):      # sb = 0 on a step to t = 0
            p_b, q_b = f[1:] + 0.5 * g2[1:] / sb, 0.5 * g2[1:] * bt / sb
        coef[:, EX] = 1.0 - h * p_a
        coef[:, EH] = h * q_a
        coef[:, A] = 1.0 - 0.5 * h * p_a
        coef[:, B] = 0.5 * h * q_a
        coef[:, CE] = -0.5 * h * p_b
        coef[:, CB] = 0.5 * h * q_b
        if to_zero:  # an Euler last step (k-diffusion's sample_heun): no evaluation at t = 0
            coef[-1] = 0.0
            coef[-1, A], coef[-1, B] = 1.0 - h[-1] * p_a[-1], h[-1] * q_a[-1]
        # the whole step's factor on x, predictor included: A + Ce Ex
        rho = 1.0 - (coef[:, A] + coef[:, CE] * coef[:, EX])
    elif method == "ddim":
        r = np.sqrt(sb / sa)
        coef[:, A] = r
        coef[:, B] = bt - r * at
    elif method == "ddpm":
        a_ab = at / bt                                  # x_a = a_ab x_b + sqrt(s2_ab) z
        s2_ab = np.maximum(sa - a_ab * a_ab * sb, 0.0)
        coef[:, A] = a_ab * sb / sa
        coef[:, B] = bt * s2_ab / sa
        coef[:, S] = np.sqrt(s2_ab * sb / sa)
    elif method == "splitting":
        if not np.allclose(f, -0.5 * g2, rtol=1e-9, atol=0.0):
            raise ValueError("sampler='splitting' is the bounded-target paper's scheme for "
                             "VP/OU schedules (f = -g^2/2); use another sampler for "
                             f"{type(schedule).__name__}")
        beta = ga2
        e = np.exp(0.5 * beta * h)
        coef[:, A] = e * (1.0 - h * beta / sa)
        coef[:, B] = e * h * beta * at / sa
        coef[:, S] = np.sqrt(-np.expm1(-beta * h))
        rho = 1.0 - coef[:, A]
    else:
        raise ValueError(f"sampler {method!r} has no fixed-grid plan")
    if not noise_last:
        coef[-1, S] = 0.0
    if not np.all(np.isfinite(coef)):
        raise ValueError(f"sampler {method!r}: the step coefficients are not finite on this "
                         "grid (check the schedule near t_end and T)")
    if to_zero:
        # the fused loop evaluates Heun's predictor at the right end even where its weights are
        # 0: give it the left end's (positive) noise level, never sigma = 0
        al, s2 = al.copy(), s2.copy()
        al[-1], s2[-1] = al[-2], s2[-2]
    return Plan(coef=coef, alpha=np.ascontiguousarray(al), sigma2=np.ascontiguousarray(s2),
                predictor=method == "heun", rho=rho, draws=draws,
                posterior_noise=method == "effective")


def check_kappa(kappa):
    """The effective sampler's kappa: a finite number >= 0 or a callable kappa(t)."""
    if callable(kappa):
        return kappa
    if isinstance(kappa, (bool, np.bool_)) or not isinstance(kappa, numbers.Real):
        raise TypeError(f"kappa must be a number >= 0 or a callable kappa(t), got "
                        f"{type(kappa).__name__}")
    if not (np.isfinite(kappa) and kappa >= 0):
        raise ValueError(f"kappa must be a finite number >= 0, got {kappa!r}")
    return float(kappa)


def kappa_at(kappa, t: np.ndarray) -> np.ndarray:
    """kappa at the step start times t (K,), evaluating a callable kappa(t) on the array."""
    if not callable(kappa):
        return np.full(t.shape, float(kappa))
    arr = np.asarray(kappa(t), dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(t.shape, float(arr))
    if arr.shape != t.shape:
        raise ValueError(f"kappa(t) must return a scalar or shape {t.shape} for the {t.size} "
                         f"step start times, got shape {arr.shape}")
    bad = ~(np.isfinite(arr) & (arr >= 0))
    if bad.any():
        raise ValueError(f"kappa(t) must be finite and >= 0, got {arr[bad][0]!r} at "
                         f"t = {t[bad][0]:.6g}")
    return arr
