"""The statistics computed in Python from the pass's partial state: regularized scores
(``mixscore.regularizers``), ``trace_cov`` and ``entropy``, and the per-entry posterior
operations of ``mixscore.covariance`` behind ``EmpiricalScore.cov_matvec`` and friends."""

from __future__ import annotations

import numpy as np

from . import covariance, smoothing
from ._validation import check_count, per_query_times
from .backends import COV_NOISE, DRAWS, STAT_NAMES, _xp, has
from .conditional import by_label, take_rows
from .regularizers import mixture_context, regularized_stats


def evaluate(model, xq, alpha, sigma2, want: set, t) -> dict:
    """The statistics ``want`` of ``model`` at (xq, alpha, sigma2, t) (t may be None): the
    backend's ``stats`` unless a regularizer or the entropy needs the partial state (left on
    the device for a model kept there; ``entropy`` is a host pass over a copy of it)."""
    if any(getattr(r, "per_point", False) for r in model.regularizers):
        return smoothing.per_point_stats(model, xq, t, alpha, sigma2, model.regularizers, want)
    base = want & set(STAT_NAMES) | ({"tau2"} if "trace_cov" in want else set())
    mix_sigma2 = sigma2
    if not model.regularizers and "entropy" not in want:
        out = model.backend.stats(xq, alpha, sigma2, base)
    else:
        native = model._native
        partial_at = model.backend.device_partial if native else model.backend.partial
        out, part = regularized_stats(model.regularizers, lambda a, s2: partial_at(xq, a, s2),
                                      xq, t, alpha, sigma2, base, model.dtype)
        mix_sigma2 = part.sigma2  # (Smoothing: the smoothed mixture's variance)
        if "entropy" in want:
            h = covariance.entropy(part.host() if native else part, model)
            out["entropy"] = part.place(h) if native else h
    if "trace_cov" in want:
        out["trace_cov"] = covariance.scaled_by_alpha2_over_sigma4(out["tau2"], alpha, mix_sigma2)
        if "tau2" not in want:
            del out["tau2"]
    return out


def _mixture_partial(model, xq, ts):
    sch = model.schedule
    ctx = mixture_context(model.regularizers, xq, ts, sch.alpha(ts), sch.sigma2(ts))
    return model.backend.partial(xq, ctx.alpha, ctx.mix_sigma2)


def _draws(model, xq, ts, R: int, seed: int, rows, first_step: int) -> np.ndarray:
    """(M, R) local indices drawn from w(x, t): one pass of the backend's draws handler when it
    has one (same streams as the reference), else ``covariance.posterior_draws``."""
    if _handler(model, "draws"):
        sch = model.schedule
        alpha = np.broadcast_to(sch.alpha(ts), ts.shape)
        sigma2 = np.broadcast_to(sch.sigma2(ts), ts.shape)
        return model.backend.draws(xq, alpha, sigma2, R, seed, rows, first_step)
    part = _mixture_partial(model, xq, ts)
    return covariance.posterior_draws(model, part, R, seed, rows, first_step)


def _handler(model, op: str) -> bool:
    """Whether the model's backend runs ``op`` itself (the ``draws`` or ``cov_noise``
    capability; the plain mixture only: a regularized one is the host reference's)."""
    capability = {"draws": DRAWS, "noise": COV_NOISE}.get(op)
    return capability is not None and has(model.backend, capability) and not model.regularizers


def posterior_op(model, op: str, x, t, y, *, v=None, R=1, seed=0, stream=None):
    """``op`` in cov_matvec, cov, hessian, draws, noise at queries x (M, D) or (D,).

    ``stream`` = (ids (M,), step) gives the random ops (draws, noise) the Philox row ids and
    first counter step of each query (the samplers: global sample index, step number); default
    the query's row and step 0."""
    from .sampling import _as_seed

    xq, single = model._queries(x)
    # a model kept on a device: draws and noise by the backend's handlers there (cuda); the
    # other ops run on the host (mixscore.covariance) and their results go back to the device
    on_host = model._native and not _handler(model, op)
    if on_host:
        xq = _xp.to_host(xq)
    m = xq.shape[0]
    ts = per_query_times(t, m, model.schedule.T)
    if op == "draws":
        R = check_count(R, "R (the number of posterior draws)")
    if op in ("draws", "noise"):
        seed = _as_seed(seed)
    vq = None
    if op == "cov_matvec":
        varr = np.asarray(_xp.to_host(v) if _xp.is_foreign(v) else v, dtype=np.float64)
        if varr.shape != np.shape(x):
            raise ValueError(f"v must have the shape of x, {np.shape(x)}, got {varr.shape}")
        vq = varr.reshape(m, -1)

    ids, step = (np.arange(m), 0) if stream is None else stream

    def run(sub, rows):
        if op == "draws":
            return {"draws": _draws(sub, take_rows(xq, rows), ts[rows], R, seed, ids[rows],
                                    step)}
        if op == "noise" and _handler(sub, op):
            sch, tq = sub.schedule, ts[rows]
            return {"value": sub.backend.cov_noise(take_rows(xq, rows), sch.alpha(tq),
                                                   sch.sigma2(tq), seed, ids[rows], step)}
        part = _mixture_partial(sub, xq[rows], ts[rows])
        if op == "cov_matvec":
            res = covariance.cov_matvec(sub, part, vq[rows])
        elif op in ("cov", "hessian"):
            res = covariance.cov(sub, part)
            if op == "hessian":
                res = res - np.eye(xq.shape[1])[None] / part.sigma2[:, None, None]
        else:
            res = covariance.cov_noise(sub, part, seed, ids[rows], step)
        return {"value": res}

    if y is None:
        out = run(model, np.arange(m))
        if "draws" in out:
            out["draws"] = out["draws"] + model.row_offset
    else:
        out = by_label(model, y, m, run)
    res = out.get("value", out.get("draws"))
    if on_host:
        b = model.backend
        res = _xp.place_like(res, b.xp, b.device, b.xp.int64 if op == "draws" else b.wide)
    return res[0] if single else res
