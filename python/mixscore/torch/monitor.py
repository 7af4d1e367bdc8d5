"""A memorization monitor for a training loop: sample the network with fixed seeds and measure
how many samples copy the training set (exact nearest neighbours), a plain function to call
every k steps; called once with the ``EmpiricalScore`` it gives the exact score's reference."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..empirical import EmpiricalScore
from ..memorization import MemorizationReport, memorization
from ..sampling import sample
from ..scales import scale_mismatch
from ..schedules import Schedule
from .adapter import as_score


@dataclass
class MonitorResult:
    """One monitor reading.

    fraction   memorized fraction by the ratio rule d1/d2 < ratio
    ci         its confidence interval (``memorization``'s ``interval``, Wilson by default)
    report     the full ``MemorizationReport`` (d1, d2, copies, absolute rule, ...)
    samples    (n, D) the samples that were measured
    settings   what produced them (``SampleResult.settings``: sampler, grid, seed, ...)
    seconds    wall time of sampling and measuring
    """

    fraction: float
    ci: tuple[float, float]
    report: MemorizationReport = field(repr=False)
    samples: np.ndarray = field(repr=False)
    settings: dict = field(repr=False)
    seconds: float


def memorization_monitor(
    score: torch.nn.Module | Callable | EmpiricalScore,
    train,
    *,
    parametrization: str = "eps",
    schedule: Schedule | None = None,
    n: int = 256,
    sampler: str = "ddpm",
    steps: int = 100,
    seed: int = 0,
    end: str = "denoised",
    time_input="t",
    sample_shape=None,
    batch_size: int | None = None,
    **memorization_kwargs,
) -> MonitorResult:
    """Sample ``score`` with fixed seeds and report memorization against ``train``.

    ``score`` is a network ``net(x, t)`` (wrapped with :func:`as_score` using
    ``parametrization``, ``schedule``, ``time_input``, ``sample_shape`` and ``batch_size``;
    a module is put in eval mode while sampling and then back in its former mode) or an
    ``EmpiricalScore`` (the exact score: the reference the network approaches). With the same
    ``n``, ``sampler``, ``steps``, ``seed`` and ``end`` both get the same grid, start and Philox
    noise, so the readings are comparable over training steps and with the reference.
    ``memorization_kwargs`` go to :func:`mixscore.memorization` (``ratio``, ``tau``,
    ``scale``, ``n_boot``, ...). The samples are drawn in the training data's units, so samples
    on another scale than ``train`` (an untrained or diverging network) give a warning and a
    reading, not the scale error of ``memorization`` (``check_scale=True`` asks for the error).
    """
    t0 = time.perf_counter()
    if isinstance(train, torch.Tensor):
        train = train.detach()  # (a tensor that requires grad reads as its values)
    elif not isinstance(train, np.ndarray):
        train = np.asarray(train)  # (a list of points)
    opts = dict(sampler=sampler, steps=steps, seed=seed, end=end, batch_size=batch_size)
    if isinstance(score, EmpiricalScore):
        res = sample(score, n, **opts)
    else:
        if schedule is None:
            raise TypeError(
                "a network needs schedule= (the forward schedule it was trained "
                "with, e.g. mixscore.VP())"
            )
        fn = as_score(
            score,
            parametrization,
            schedule=schedule,
            time_input=time_input,
            sample_shape=sample_shape,
        )
        # samples as flat rows of the training data's values per point (images (N, C, H, W)
        # too) unless sample_shape says the network's own shape
        dim = math.prod(tuple(train.shape)[1:]) if sample_shape is None else None
        dtype = np.float32 if train.dtype in (np.float32, torch.float32) else np.float64
        was_training = isinstance(score, torch.nn.Module) and score.training
        if was_training:
            score.eval()
        try:
            res = sample(fn, n, dim=dim, dtype=dtype, **opts)
        finally:
            if was_training:
                score.train()
    warn = "check_scale" not in memorization_kwargs and "samples_range" not in memorization_kwargs
    if warn:
        memorization_kwargs["check_scale"] = False
    rep = memorization(res.samples, train, **memorization_kwargs)
    what = warn and scale_mismatch(res.samples, train, ratio=rep.ratio)
    if what:
        warnings.warn(f"memorization_monitor: {what}: the network's samples are far from the "
                      f"data (untrained or diverging?) and count as not memorized",
                      RuntimeWarning, stacklevel=2)
    return MonitorResult(
        fraction=rep.fraction_ratio,
        ci=rep.ci_ratio,
        report=rep,
        samples=res.samples,
        settings=res.settings,
        seconds=time.perf_counter() - t0,
    )
