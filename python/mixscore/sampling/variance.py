"""The options of the generalization-through-variance samplers (``naive``, ``effective``) and
the kernel-density baseline ``kde`` (that paper's Fig. 2 comparison).

``kde`` draws directly from the Gaussian kernel density estimate of the training set,

    q_h(x) = sum_n pi_n N(x; X_n, h^2 I) / sum_n pi_n,

as x = X_n + h Z with n drawn with weight pi_n: "convolving the training distribution with a
single kernel" (the paper's Sec. 7). The default bandwidth h = sigma(t_end) / alpha(t_end) makes
q_h the law of x(t_end) / alpha(t_end) under the exact reverse dynamics, the distribution the
exact samplers reach at t_end (in data units). The index and the noise of sample i are the
Philox streams of ``start="exact"`` (seed, i), so results do not depend on batch size.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _core
from .._validation import check_count
from ..backends import COV_NOISE, has
from .denoisers import ModelDenoiser
from .methods import POSTERIOR_SAMPLERS, SAMPLERS, check_kappa

_OPTION_OF = {"R": "naive", "kappa": "effective", "bandwidth": "kde"}


def check_options(sampler: str, R, kappa, bandwidth) -> dict:
    """R, kappa and bandwidth checked against the sampler: {name: value} for the plan."""
    given = {"R": R, "kappa": kappa, "bandwidth": bandwidth}
    for name, value in given.items():
        if value is not None and sampler != _OPTION_OF[name]:
            raise ValueError(
                f"{name}= applies to sampler={_OPTION_OF[name]!r} only (got sampler={sampler!r})"
            )
    if sampler == "naive":
        return {"R": check_count(1 if R is None else R, "R (the number of posterior draws)")}
    if sampler == "effective":
        if kappa is None:
            raise ValueError(
                "sampler='effective' needs kappa= (a number >= 0 or a callable "
                "kappa(t)): the noise covariance kappa g^4/4 C per unit time"
            )
        return {"kappa": check_kappa(kappa)}
    if sampler == "kde" and bandwidth is not None:
        if (
            isinstance(bandwidth, (bool, np.bool_))
            or not isinstance(bandwidth, numbers.Real)
            or not (np.isfinite(bandwidth) and bandwidth >= 0)
        ):
            raise ValueError(f"bandwidth must be a finite number >= 0, got {bandwidth!r}")
    return {}


def check_model(sampler: str, den, fused) -> None:
    """naive, effective and kde need an unregularized EmpiricalScore; kde runs in Python,
    naive fused where the backend has the ``draws`` capability, effective where it has
    ``cov_noise`` (cuda)."""
    if sampler not in POSTERIOR_SAMPLERS + ("kde",):
        return
    if not isinstance(den, ModelDenoiser):
        raise ValueError(
            f"sampler={sampler!r} needs an EmpiricalScore (it draws training "
            "points from the posterior or the data)"
        )
    if den.model.regularizers:
        raise ValueError(
            f"sampler={sampler!r} does not apply regularizers yet; build the "
            "EmpiricalScore without regularizer="
        )
    if fused and (sampler == "kde" or (sampler == "effective"
                                       and not has(den.model.backend, COV_NOISE))):
        raise ValueError(
            f"fused=True: sampler={sampler!r} runs in the Python loop (its "
            "noise or draws are NumPy); use fused=None or False"
        )


def draw_index(model, u: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Training indices drawn with the weights pi_n by inverting the CDF at the uniforms u
    (n,); with ``labels`` (n,), each within the points of its label."""
    w = np.ones(model.n) if model.weights is None else model.weights
    if labels is None:
        groups = [(np.arange(model.n), np.arange(u.size))]
    else:
        lg = model.label_groups
        vals, inv = np.unique(labels, return_inverse=True)
        groups = [(lg.index[lg.group_of(v)], np.flatnonzero(inv == j)) for j, v in enumerate(vals)]
    idx = np.empty(u.size, np.int64)
    for points, rows in groups:
        cdf = np.cumsum(w[points] / w[points].sum())
        k = np.minimum(np.searchsorted(cdf, u[rows], side="right"), points.size - 1)
        idx[rows] = points[k]
    return idx


def sample_kde(
    den: ModelDenoiser,
    n: int,
    ts: np.ndarray,
    seed: int,
    start,
    end: str,
    labels: np.ndarray | None,
    bandwidth: float | None,
):
    """n draws from the Gaussian KDE of the training set (of each sample's label's points)."""
    from . import SampleResult

    if not isinstance(start, str):
        raise ValueError(
            "sampler='kde' draws directly from the kernel density estimate; "
            "start= does not apply (leave it at its default)"
        )
    if end != "as_is":
        raise ValueError(
            f"sampler='kde' returns the KDE draws themselves: end must be 'as_is', got {end!r}"
        )
    model, sch, t_end = den.model, den.schedule, float(ts[-1])
    h = float(sch.sigma(t_end) / sch.alpha(t_end)) if bandwidth is None else float(bandwidth)
    ids = np.arange(n, dtype=np.int64)
    idx = draw_index(model, _core.philox_uniforms(seed, ids, _core.STEP_START_INDEX), labels)
    z = _core.philox_normals(seed, ids, _core.STEP_START_NOISE, model.dim)
    x = np.asarray(model.train, np.float64)[idx] + h * z
    settings = dict(
        sampler="kde",
        description=SAMPLERS["kde"],
        bandwidth=h,
        t_end=t_end,
        bandwidth_rule="sigma(t_end) / alpha(t_end)" if bandwidth is None else "given",
        end=end,
        seed=seed,
        start="none (direct KDE draws)",
        dtype=str(den.dtype),
        schedule=repr(sch),
        n=n,
        dim=model.dim,
        fused=False,
        conditional=labels is not None,
    )
    return SampleResult(
        samples=x.astype(den.dtype),
        times=np.array([t_end]),
        start_index=idx,
        nfev=0,
        settings=settings,
    )
