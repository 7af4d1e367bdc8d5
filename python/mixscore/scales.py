"""Value ranges and scales of data: the checks that stop silent wrong answers.

Two mistakes give plausible but wrong numbers without an error:

* comparing samples and training data stored on different scales (PNG samples in 0..255
  against a training set in [-1, 1]: every sample is "far" from every training point, so
  nothing looks memorized). :func:`check_same_scale` refuses that, and :func:`map_range` maps
  one range onto another explicitly.
* noising data of the wrong scale with a schedule built for unit-scale data (VP, cosine, OU:
  their prior at T is N(0, I), so 0..255 pixels are nowhere near it). :func:`schedule_warning`
  says so, with the fix.
"""

from __future__ import annotations

import math

import numpy as np

# The usual nominal ranges of image data, tried in this order when a range must be inferred.
NOMINAL_RANGES = ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0))
# Samples and training data whose extents differ by more than this factor are refused.
MAX_SCALE_RATIO = 10.0
# A variance-preserving schedule assumes data of about unit scale; warn beyond this RMS.
MAX_VP_RMS = 10.0


def value_range(a) -> tuple[float, float]:
    """(min, max) of all values of ``a``: a NumPy array or a tensor on any device (no copy)."""
    return float(a.min()), float(a.max())


def extent(lo: float, hi: float) -> float:
    """The size of values in [lo, hi]: max(hi - lo, |lo|, |hi|) (0 only for all-zero data)."""
    return max(hi - lo, abs(lo), abs(hi))


def nominal_range(lo: float, hi: float) -> tuple[float, float] | None:
    """The first of [0, 1], [-1, 1], [0, 255] that contains [lo, hi], or None."""
    for cand in NOMINAL_RANGES:
        if cand[0] <= lo and hi <= cand[1]:
            return cand
    return None


def as_range(value, name: str) -> tuple[float, float]:
    """A finite pair (lo, hi) with hi > lo, or a clear error naming ``name``."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (lo, hi), got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"{name} must be finite with hi > lo, got {value!r}")
    return lo, hi


def map_range(a: np.ndarray, src: tuple[float, float], dst: tuple[float, float]) -> np.ndarray:
    """Values of ``a`` mapped linearly from the range ``src`` onto ``dst`` (float64)."""
    (s0, s1), (d0, d1) = src, dst
    return d0 + (np.asarray(a, np.float64) - s0) * ((d1 - d0) / (s1 - s0))


def likely_range(lo: float, hi: float) -> tuple[float, float] | None:
    """The nominal range that [lo, hi] most likely comes from (for hints): the one containing
    it, else the one of the same sign whose extent is closest (0..256.3 -> [0, 255]) if within
    a factor 2, else None (values far outside every nominal range: no guess)."""
    found = nominal_range(lo, hi)
    if found is not None:
        return found
    e = extent(lo, hi)
    if e == 0:
        return None
    same_sign = [c for c in NOMINAL_RANGES if (c[0] < 0) == (lo < -0.1 * e)] or NOMINAL_RANGES
    best = min(same_sign, key=lambda c: abs(math.log(extent(*c) / e)))
    return best if abs(math.log(extent(*best) / e)) <= math.log(2.0) else None


def _fmt(r: tuple[float, float]) -> str:
    return f"[{r[0]:.4g}, {r[1]:.4g}]"


def scale_mismatch(samples, train, ratio: np.ndarray | None = None) -> str | None:
    """None when the extents of samples and training data agree within ``MAX_SCALE_RATIO``
    (an order of magnitude), else what differs ("samples span [..] but train spans [..]: ...").

    Samples much smaller than the training data are a mismatch unless most of them are copies
    of training points: with ``ratio`` (their d1/d2) a set whose majority passes the ratio
    rule (a few copies of points near the origin) has the data's scale; without ``ratio`` the
    smaller direction is left open (None) for a second call after the search."""
    rs, rt = value_range(samples), value_range(train)
    es, et = extent(*rs), extent(*rt)
    if es == 0 or et == 0 or max(es / et, et / es) <= MAX_SCALE_RATIO:
        return None
    if es < et and (ratio is None or float(np.mean(ratio < 1 / 3)) > 0.5):
        return None
    return (f"samples span {_fmt(rs)} but train spans {_fmt(rt)}: their scales differ "
            f"{max(es / et, et / es):.3g}x")


def check_same_scale(samples, train, *, option: str, off_option: str,
                     ratio: np.ndarray | None = None) -> None:
    """Raise ValueError when the extents of samples and training data differ by more than
    ``MAX_SCALE_RATIO`` (an order of magnitude; samples smaller only when most are not copies
    of training points: ``scale_mismatch``, called once before the search and once with the
    samples' d1/d2 ``ratio`` after it). The message names both ranges, ``option`` (the
    argument that maps the samples onto the training range, a format string with ``{lo}`` and
    ``{hi}``) and ``off_option`` (the one that turns the check off)."""
    what = scale_mismatch(samples, train, ratio)
    if what is None:
        return
    likely = likely_range(*value_range(samples))
    if likely is None:
        fix = (f"The samples lie far outside the usual image ranges (a diverged sampler or an "
               f"untrained network gives that); if they are in other units, map them onto the "
               f"training data's range with {option.format(lo='lo', hi='hi')} (their nominal "
               f"range)")
    else:
        fix = (f"Map the samples onto the training data's range with "
               f"{option.format(lo=f'{likely[0]:g}', hi=f'{likely[1]:g}')} (the samples' own "
               f"range)")
    raise ValueError(
        f"{what}, so the distances would compare unlike units (e.g. 0..255 PNGs against data "
        f"in [-1, 1]). {fix}, or turn this check off with {off_option} if the scales really "
        f"differ."
    )


def root_mean_square(a: np.ndarray, chunk: int = 1 << 20) -> float:
    """sqrt(mean(a^2)) accumulated in float64 over row chunks (no full-size copy, no float32
    overflow)."""
    rows = max(1, chunk // max(1, a.shape[1]))
    total = sum(
        float(np.sum(np.square(a[i : i + rows], dtype=np.float64)))
        for i in range(0, a.shape[0], rows)
    )
    return math.sqrt(total / a.size)


def _is_variance_preserving(schedule) -> bool:
    ts = np.array([schedule.T, 0.5 * schedule.T])
    a, s2 = schedule.alpha(ts), schedule.sigma2(ts)
    return bool(np.allclose(a * a + s2, 1.0, rtol=0, atol=1e-6))


def schedule_warning(train: np.ndarray, schedule) -> str | None:
    """Why ``schedule`` does not fit the scale of ``train``, or None when it does.

    A variance-preserving schedule (VP, cosine, OU: alpha^2 + sigma^2 = 1) noises unit-scale
    data towards its prior N(0, I); data with a root-mean-square value above ``MAX_VP_RMS``
    (e.g. 0..255 pixels) never reach that prior, and the sampler's start is far from p_T.
    Other schedules need sigma(T) at least the data's scale alpha(T) RMS."""
    rms = root_mean_square(train)
    name = type(schedule).__name__
    fix = (
        "map the data to [-1, 1] (mixscore.datasets' value_range=(-1, 1), or "
        "x / 127.5 - 1 for 0..255 pixels), or use a schedule without a unit-scale prior: "
        "VE or EDM with sigma_max at least the largest distance between training points"
    )
    if _is_variance_preserving(schedule):
        if rms > MAX_VP_RMS:
            return (
                f"train has root-mean-square value {rms:.4g}, but {name} is variance "
                f"preserving and assumes data of unit scale (its prior at T is N(0, I)); "
                f"samples from such a model start far from p_T and copy training points "
                f"very unevenly. Fix: {fix}."
            )
        return None
    a_T, s_T = float(schedule.alpha(schedule.T)), float(schedule.sigma(schedule.T))
    if a_T * rms > s_T:
        return (
            f"train has root-mean-square value {rms:.4g}, larger than {name}'s noise "
            f"sigma(T) = {s_T:.4g} at T (alpha(T) = {a_T:.4g}): the prior N(0, sigma(T)^2 I) "
            f"does not cover the data. Fix: {fix}."
        )
    return None
