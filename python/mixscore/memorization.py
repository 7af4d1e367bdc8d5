"""Memorization metrics of generated samples against a training set (SCIENCE.md section 5).

``ms.memorization(samples, train)`` measures, for every sample, the exact distances d1 and d2
to its nearest and second-nearest training points (``ms.nearest``: recomputed from direct
float64 differences, so an exact copy has d1 = 0) and applies the usual criteria:

* ratio rule (Yoon et al.; Gu et al.; Carlini et al. style): memorized if d1 / d2 < ratio
  (default 1/3). When d2 == 0 (the sample equals two identical training points) d1 == 0 too and
  the ratio is defined as 0: memorized.
* absolute rule (Baptista et al.): memorized if d1 < tau, tau in the reported distance units.

Fractions come with Wilson score confidence intervals (honest at 0% and 100%; a percentile
bootstrap is available with ``interval="bootstrap"``). The copy histogram records which
training point each memorized sample copies (its nearest one) and compares it with the uniform
distribution or given weights (chi-squared, KL, total variation).

Distance units (``scale``): ``"data"`` the data's own units; ``"pixels255"`` the data range
mapped to 0..255, i.e. distances multiplied by 255 / (hi - lo) for ``data_range=(lo, hi)``
(inferred from the training data when not given: [0, 1], then [-1, 1], then [0, 255]);
``"sqrt_dim"`` distances divided by sqrt(D) (a root-mean-square per coordinate). The ratio
rule does not depend on the units; tau is read in the chosen units.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

from ._validation import as_float_matrix, as_points, as_weights, check_image_shapes
from .nearest import NearestIndex, check_k
from .scales import as_range, check_same_scale, map_range, nominal_range, value_range

SCALES = ("data", "pixels255", "sqrt_dim")
COPY_RULES = ("ratio", "tau", "all")
INTERVALS = ("wilson", "bootstrap")
INTERVAL_NAMES = {"wilson": "Wilson score", "bootstrap": "percentile bootstrap"}


# ----------------------------------------------------------------------------------- statistics

def gammaincc(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) (series / continued fraction, NumPy-free of
    SciPy; agrees with scipy.special.gammaincc to ~1e-12 relative, tested)."""
    if a <= 0 or x < 0 or not math.isfinite(a) or math.isnan(x):
        raise ValueError(f"gammaincc needs a > 0 and x >= 0, got a = {a}, x = {x}")
    if x == 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    log_pre = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:  # series for P(a, x); Q = 1 - P is not small here
        term = total = 1.0 / a
        ap = a
        for _ in range(1_000_000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(log_pre))
    # continued fraction for Q(a, x) (modified Lentz)
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 1_000_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return min(1.0, math.exp(log_pre) * h)


def bootstrap_ci(flags: np.ndarray, n_boot: int, confidence: float,
                 rng: np.random.Generator) -> tuple[float, float]:
    """Percentile-bootstrap CI of the mean of a 0/1 array.

    Resampling m indicators with replacement gives a sum distributed exactly as
    Binomial(m, observed fraction), so that is drawn directly (same distribution, O(n_boot)).
    It collapses to a point at 0% and 100% (no resample can differ): prefer ``wilson_ci``."""
    m = flags.size
    p = float(np.mean(flags))
    boot = rng.binomial(m, p, size=n_boot) / m
    lo, hi = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def wilson_ci(flags: np.ndarray, confidence: float) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927, JASA 22, Eq. for
    p = (p_hat + z^2/2m +- z sqrt(p_hat (1 - p_hat)/m + z^2/4m^2)) / (1 + z^2/m)).

    Unlike the bootstrap it stays honest at the edges: 500/500 gives a lower end below 1
    (m / (m + z^2)), and one sample gives a wide interval."""
    m, k = flags.size, int(np.count_nonzero(flags))
    p = k / m
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    z2m = z * z / m
    center = (p + z2m / 2) / (1 + z2m)
    half = z / (1 + z2m) * math.sqrt(p * (1 - p) / m + z2m / (4 * m))
    # the ends are exactly 0 and 1 at k = 0 and k = m (center -+ half there only to rounding)
    return (0.0 if k == 0 else max(0.0, center - half),
            1.0 if k == m else min(1.0, center + half))


def proportion_ci(flags: np.ndarray, interval: str, confidence: float, n_boot: int,
                  rng: np.random.Generator) -> tuple[float, float]:
    """The confidence interval of a memorized fraction by the method ``interval``."""
    if interval == "wilson":
        return wilson_ci(flags, confidence)
    return bootstrap_ci(flags, n_boot, confidence, rng)


@dataclass
class CopyStats:
    """Histogram of the training points copied by memorized samples, against a reference.

    counts      (N,) copies per training point
    n_copies    number of samples counted (the memorized ones under ``rule``)
    n_distinct  distinct training points copied
    reference   "uniform" or "weights": the expected copy distribution pi
    chi2, dof, p_value  Pearson chi-squared of counts against n_copies * pi over all N points
                (the p-value is the chi-squared approximation; ``reliable`` is False when some
                expected count is below 5, where it should not be trusted)
    kl          KL(empirical || pi) in nats;  tv  total variation 0.5 * sum |empirical - pi|
    """

    rule: str
    counts: np.ndarray
    n_copies: int
    n_distinct: int
    reference: str
    chi2: float | None = None
    dof: int | None = None
    p_value: float | None = None
    reliable: bool = False
    kl: float | None = None
    tv: float | None = None

    def top(self, n: int = 5) -> list[tuple[int, int]]:
        """The n most copied training points as (index, count), most copied first."""
        order = np.argsort(-self.counts, kind="stable")[:n]
        return [(int(i), int(self.counts[i])) for i in order if self.counts[i] > 0]

    def to_dict(self) -> dict:
        nz = np.flatnonzero(self.counts)
        return {
            "rule": self.rule, "n_copies": self.n_copies, "n_distinct": self.n_distinct,
            "reference": self.reference, "chi2": self.chi2, "dof": self.dof,
            "p_value": self.p_value, "reliable": self.reliable, "kl": self.kl, "tv": self.tv,
            "copied_index": nz.tolist(), "copied_count": self.counts[nz].tolist(),
        }


def copy_stats(nn_index: np.ndarray, flags: np.ndarray, n_train: int, rule: str,
               weights: np.ndarray | None = None) -> CopyStats:
    counts = np.bincount(nn_index[flags], minlength=n_train).astype(np.int64)
    m = int(counts.sum())
    pi = np.full(n_train, 1.0 / n_train) if weights is None else weights / weights.sum()
    st = CopyStats(rule=rule, counts=counts, n_copies=m, n_distinct=int(np.count_nonzero(counts)),
                   reference="uniform" if weights is None else "weights")
    if m == 0:
        return st
    expected = m * pi
    st.chi2 = float(np.sum((counts - expected) ** 2 / expected))
    st.dof = n_train - 1
    st.p_value = gammaincc(st.dof / 2, st.chi2 / 2) if st.dof > 0 else None
    st.reliable = bool(np.min(expected) >= 5)
    p = counts / m
    nz = counts > 0
    st.kl = float(np.sum(p[nz] * np.log(p[nz] / pi[nz])))
    st.tv = float(0.5 * np.sum(np.abs(p - pi)))
    return st


# --------------------------------------------------------------------------------------- scales

def _infer_range(train: np.ndarray, why: str) -> tuple[float, float]:
    """The nominal range of the training data ([0, 1], [-1, 1] or [0, 255]) or a clear error."""
    lo, hi = value_range(train)
    found = nominal_range(lo, hi)
    if found is None:
        raise ValueError(f"{why} cannot infer the data range: train spans [{lo:g}, {hi:g}], not "
                         f"inside [0, 1], [-1, 1] or [0, 255]; pass data_range=(lo, hi)")
    return found


def scale_factor(scale: str, train: np.ndarray, data_range=None):
    """(factor, data_range or None): reported distance = factor * Euclidean distance."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if scale == "data":
        return 1.0, None
    if scale == "sqrt_dim":
        return 1.0 / math.sqrt(train.shape[1]), None
    lo, hi = (_infer_range(train, "scale='pixels255'") if data_range is None
              else as_range(data_range, "data_range"))
    return 255.0 / (hi - lo), (lo, hi)


# --------------------------------------------------------------------------------------- report

def _fmt_pct(x):
    return "-" if x is None else f"{100 * x:.2f}%"


@dataclass
class MemorizationReport:
    """Result of :func:`memorization`. Distances are in the units of ``scale``.

    Per sample: ``d1``, ``d2`` (nearest and second-nearest distances), ``nn_index`` (index of the
    nearest training point), ``ratio`` (d1/d2, 0 where d2 == 0), ``memorized_ratio`` and
    ``memorized_tau`` (None without tau), plus ``distances`` / ``indices`` (M, k).
    """

    n_samples: int
    n_train: int
    dim: int
    k: int
    scale: str
    scale_factor: float
    data_range: tuple[float, float] | None
    distances: np.ndarray = field(repr=False)
    indices: np.ndarray = field(repr=False)
    ratio: np.ndarray = field(repr=False)
    ratio_threshold: float
    memorized_ratio: np.ndarray = field(repr=False)
    fraction_ratio: float
    ci_ratio: tuple[float, float]
    tau: float | None
    memorized_tau: np.ndarray | None = field(repr=False)
    fraction_tau: float | None
    ci_tau: tuple[float, float] | None
    copies: CopyStats = field(repr=False)
    confidence: float
    n_boot: int
    seed: int | None
    backend: str
    interval: str = "wilson"
    inputs: dict = field(default_factory=dict)
    version: str = ""

    @property
    def d1(self) -> np.ndarray:
        return self.distances[:, 0]

    @property
    def d2(self) -> np.ndarray:
        return self.distances[:, 1]

    @property
    def nn_index(self) -> np.ndarray:
        return self.indices[:, 0]

    @property
    def units(self) -> str:
        if self.scale == "data":
            return "data units"
        if self.scale == "sqrt_dim":
            return f"data units / sqrt(D) (D = {self.dim})"
        lo, hi = self.data_range
        return f"0..255 pixel units (data range [{lo:g}, {hi:g}], x{self.scale_factor:g})"

    def to_dict(self, per_sample: bool = True) -> dict:
        """Plain Python types (JSON-ready). ``per_sample`` adds d1, d2, ratio, nn_index and the
        flags per sample."""
        out = {
            "n_samples": self.n_samples, "n_train": self.n_train, "dim": self.dim, "k": self.k,
            "scale": self.scale, "scale_factor": self.scale_factor, "units": self.units,
            "data_range": None if self.data_range is None else list(self.data_range),
            "ratio_threshold": self.ratio_threshold, "fraction_ratio": self.fraction_ratio,
            "ci_ratio": list(self.ci_ratio), "tau": self.tau, "fraction_tau": self.fraction_tau,
            "ci_tau": None if self.ci_tau is None else list(self.ci_tau),
            "confidence": self.confidence, "interval": self.interval, "n_boot": self.n_boot,
            "seed": self.seed, "backend": self.backend, "mixscore": self.version,
            "inputs": self.inputs,
            "d1_summary": _summary_stats(self.d1), "d2_summary": _summary_stats(self.d2),
            "copies": self.copies.to_dict(),
        }
        if per_sample:
            out["per_sample"] = {
                "d1": self.d1.tolist(), "d2": self.d2.tolist(), "ratio": self.ratio.tolist(),
                "nn_index": self.nn_index.tolist(), "distances": self.distances.tolist(),
                "indices": self.indices.tolist(),
                "memorized_ratio": self.memorized_ratio.tolist(),
                "memorized_tau": (None if self.memorized_tau is None
                                  else self.memorized_tau.tolist()),
            }
        return out

    def to_json(self, path=None, per_sample: bool = True, indent: int | None = 1) -> str:
        """The report as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(per_sample), indent=indent, allow_nan=False)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return text

    @classmethod
    def from_dict(cls, d: dict) -> MemorizationReport:
        """The report written by ``to_dict(per_sample=True)`` (or read back from its JSON)."""
        ps = d.get("per_sample")
        if not ps or "distances" not in ps:
            raise ValueError("the report has no per-sample values (it was written with "
                             "per_sample=False or by an older mixscore); cannot rebuild it")
        c = d["copies"]
        counts = np.zeros(d["n_train"], np.int64)
        counts[np.asarray(c["copied_index"], np.int64)] = c["copied_count"]
        copies = CopyStats(rule=c["rule"], counts=counts, n_copies=c["n_copies"],
                           n_distinct=c["n_distinct"], reference=c["reference"],
                           chi2=c["chi2"], dof=c["dof"], p_value=c["p_value"],
                           reliable=c["reliable"], kl=c["kl"], tv=c["tv"])
        pair = (lambda v: None if v is None else tuple(v))  # noqa: E731
        mem_tau = ps["memorized_tau"]
        return cls(
            n_samples=d["n_samples"], n_train=d["n_train"], dim=d["dim"], k=d["k"],
            scale=d["scale"], scale_factor=d["scale_factor"], data_range=pair(d["data_range"]),
            distances=np.asarray(ps["distances"], np.float64).reshape(-1, d["k"]),
            indices=np.asarray(ps["indices"], np.int64).reshape(-1, d["k"]),
            ratio=np.asarray(ps["ratio"], np.float64), ratio_threshold=d["ratio_threshold"],
            memorized_ratio=np.asarray(ps["memorized_ratio"], bool),
            fraction_ratio=d["fraction_ratio"], ci_ratio=tuple(d["ci_ratio"]), tau=d["tau"],
            memorized_tau=None if mem_tau is None else np.asarray(mem_tau, bool),
            fraction_tau=d["fraction_tau"], ci_tau=pair(d["ci_tau"]), copies=copies,
            confidence=d["confidence"], n_boot=d["n_boot"], seed=d["seed"],
            backend=d["backend"], interval=d.get("interval", "bootstrap"),
            inputs=d.get("inputs", {}), version=d.get("mixscore", ""))

    @classmethod
    def from_json(cls, source: str | os.PathLike) -> MemorizationReport:
        """Read a report written by ``to_json`` (a file path, or the JSON text itself)."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            with open(source, encoding="utf-8") as f:
                text = f.read()
        return cls.from_dict(json.loads(text))

    def summary(self) -> str:
        """A readable table of the results."""
        c = self.copies
        conf = f"{100 * self.confidence:g}% {INTERVAL_NAMES[self.interval]} CI"
        rows = [
            ("samples / train / D / k",
             f"{self.n_samples} / {self.n_train} / {self.dim} / {self.k}"),
            ("distance units", self.units),
            ("d1 min / median / max", _three(self.d1)),
            ("d2 min / median / max", _three(self.d2)),
            (f"ratio rule d1/d2 < {self.ratio_threshold:.4g}",
             f"{_fmt_pct(self.fraction_ratio)} ({int(self.memorized_ratio.sum())}/"
             f"{self.n_samples}), {conf} [{_fmt_pct(self.ci_ratio[0])}, "
             f"{_fmt_pct(self.ci_ratio[1])}]"),
        ]
        if self.tau is not None:
            rows.append((f"absolute rule d1 < {self.tau:.4g}",
                         f"{_fmt_pct(self.fraction_tau)} ({int(self.memorized_tau.sum())}/"
                         f"{self.n_samples}), {conf} [{_fmt_pct(self.ci_tau[0])}, "
                         f"{_fmt_pct(self.ci_tau[1])}]"))
        rows.append((f"copies ({c.rule} rule)",
                     f"{c.n_copies} samples copy {c.n_distinct} distinct training points"))
        if c.chi2 is not None:
            note = "" if c.reliable else " (expected counts < 5: approximate)"
            p = "-" if c.p_value is None else f"{c.p_value:.3g}"
            rows.append((f"vs {c.reference}",
                         f"chi2 = {c.chi2:.4g}, dof = {c.dof}, p = {p}{note}"))
            rows.append(("", f"KL = {c.kl:.4g} nats, TV = {c.tv:.4g}"))
            top = ", ".join(f"#{i} x{n}" for i, n in c.top(5))
            rows.append(("most copied", top))
        width = max(len(r[0]) for r in rows)
        lines = ["mixscore memorization report"]
        lines += [f"  {name:<{width}}  {value}" for name, value in rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _summary_stats(a: np.ndarray) -> dict:
    return {"min": float(a.min()), "median": float(np.median(a)), "mean": float(a.mean()),
            "max": float(a.max())}


def _three(a: np.ndarray) -> str:
    return f"{a.min():.4g} / {np.median(a):.4g} / {a.max():.4g}"


# ------------------------------------------------------------------------------------ the entry

def memorization(samples: ArrayLike, train: ArrayLike, *, k: int = 2, ratio: float = 1 / 3,
                 tau: float | None = None, scale: str = "data",
                 data_range: tuple[float, float] | None = None,
                 samples_range: tuple[float, float] | None = None, check_scale: bool = True,
                 weights: ArrayLike | None = None, copy_rule: str = "ratio",
                 interval: str = "wilson", n_boot: int = 1000, confidence: float = 0.95,
                 seed: int | np.random.Generator | None = 0, backend: str = "auto",
                 num_threads: int = 0, scale_option: str = "samples_range=({lo}, {hi})",
                 scale_off_option: str = "check_scale=False") -> MemorizationReport:
    """Memorization metrics of ``samples`` (M, D) against ``train`` (N, D).

    ``samples`` and ``train`` follow one convention (as ``ms.nearest``): (M, D) rows, one
    point (D,), or image stacks (M, H, W[, C]) flattened per row. ``train`` may also be a
    prepared ``NearestIndex`` (e.g. ``NearestIndex.from_model(model)``, which shares the score
    model's preparation), searched as it is.

    Parameters
    ----------
    k : int
        Neighbours computed per sample (>= 2; d1 and d2 are the first two).
    ratio : float
        Ratio-rule threshold in (0, 1): memorized if d1 / d2 < ratio.
    tau : float, optional
        Absolute-rule threshold (> 0, in the units of ``scale``): memorized if d1 < tau.
    scale : {"data", "pixels255", "sqrt_dim"}
        Units of the reported distances and of tau (see the module docstring).
    data_range : (lo, hi), optional
        The training data's value range: for ``scale="pixels255"`` the range mapped to 0..255,
        and the target of ``samples_range`` (default: inferred, [0, 1], [-1, 1] or [0, 255]).
    samples_range : (lo, hi), optional
        The samples' value range; the samples are mapped linearly from it onto the training
        data's range before any distance (e.g. (0, 255) for PNG samples of data in [-1, 1]).
    check_scale : bool
        Refuse (ValueError naming both ranges) samples and training data whose value extents
        differ by more than 10x: distances across scales are meaningless (0..255 PNGs against
        [-1, 1] data report 0% memorized). Pass False only if the scales truly differ.
    weights : (N,) array, optional
        Expected copy distribution (normalized) for the chi-squared / KL / TV comparison;
        default uniform.
    copy_rule : {"ratio", "tau", "all"}
        Which samples enter the copy histogram: memorized by the ratio rule, by the absolute
        rule (needs tau), or every sample (its nearest training point).
    interval : {"wilson", "bootstrap"}
        Confidence interval of the fractions: Wilson score (default; stays honest at 0% and
        100%) or percentile bootstrap (collapses to a point there).
    n_boot, seed
        Bootstrap resamples and the NumPy seed or Generator (``interval="bootstrap"`` only).
    confidence : float
        Two-sided confidence level of the intervals.
    backend, num_threads
        Passed to :func:`mixscore.nearest`.
    scale_option, scale_off_option
        How the scale-check error names ``samples_range`` and ``check_scale`` (the CLI passes
        its option names).
    """
    from . import __version__

    train_in, samples_in = train, samples
    index = train if isinstance(train, NearestIndex) else None
    if index is not None:
        train = train_in = index.train
    train = as_float_matrix(as_points(train, "train")[0], "train")
    n = train.shape[0]
    rows = as_points(samples, "samples", train.shape[1],
                     f"train (N = {n}, D = {train.shape[1]})")[0]
    samples = as_float_matrix(rows, "samples")
    check_image_shapes(np.shape(samples_in)[1:], np.shape(train_in)[1:], "samples", "train")
    k = check_k(k, n, low=2, why="d1 and d2 need two training points")
    ratio = float(ratio)
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio threshold must lie in (0, 1) (the rule is d1/d2 < ratio), "
                         f"got {ratio!r}")
    if tau is not None:
        tau = float(tau)
        if not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    if copy_rule not in COPY_RULES:
        raise ValueError(f"copy_rule must be one of {COPY_RULES}, got {copy_rule!r}")
    if copy_rule == "tau" and tau is None:
        raise ValueError("copy_rule='tau' needs tau")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}, got {interval!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if not (seed is None or isinstance(seed, np.random.Generator)
            or (isinstance(seed, int | np.integer) and not isinstance(seed, bool) and seed >= 0)):
        raise ValueError(f"seed must be an int >= 0, None or a numpy Generator, got {seed!r}")
    w = None if weights is None else as_weights(weights, n)
    factor, drange = scale_factor(scale, train, data_range)
    inputs = {"samples": _describe_input(samples_in), "train": _describe_input(train_in),
              "samples_range": None, "check_scale": bool(check_scale)}
    if samples_range is not None:
        src = as_range(samples_range, "samples_range")
        dst = drange or (as_range(data_range, "data_range") if data_range is not None
                         else _infer_range(train, "samples_range"))
        samples = map_range(samples, src, dst)
        inputs["samples_range"] = {"from": list(src), "to": list(dst)}
    scale_check = {"option": scale_option, "off_option": scale_off_option}
    if samples_range is None and check_scale:  # samples larger than the data: before the work
        check_same_scale(samples, train, **scale_check)

    if index is None:
        index = NearestIndex(train, backend=backend, num_threads=num_threads, name="train")
    res = index.search(samples, k, name="samples")
    dist = res.distances * factor
    # the ratio from the unscaled exact distances: identical for every choice of units
    d1, d2 = res.distances[:, 0], res.distances[:, 1]
    r = d1 / np.where(d2 > 0, d2, 1.0)  # d2 == 0 implies d1 == 0: ratio 0 (memorized)
    if samples_range is None and check_scale:  # smaller, and not copies: needs the ratios
        check_same_scale(samples, train, ratio=r, **scale_check)
    d1 = dist[:, 0]
    mem_ratio = r < ratio
    rng = np.random.default_rng(seed)
    ci_ratio = proportion_ci(mem_ratio, interval, confidence, int(n_boot), rng)
    mem_tau = frac_tau = ci_tau = None
    if tau is not None:
        mem_tau = d1 < tau
        frac_tau = float(mem_tau.mean())
        ci_tau = proportion_ci(mem_tau, interval, confidence, int(n_boot), rng)
    flags = {"ratio": mem_ratio, "tau": mem_tau, "all": np.ones_like(mem_ratio)}[copy_rule]
    copies = copy_stats(res.indices[:, 0], flags, n, copy_rule, w)
    return MemorizationReport(
        n_samples=samples.shape[0], n_train=n, dim=train.shape[1], k=k, scale=scale,
        scale_factor=factor, data_range=drange, distances=dist, indices=res.indices, ratio=r,
        ratio_threshold=ratio, memorized_ratio=mem_ratio, fraction_ratio=float(mem_ratio.mean()),
        ci_ratio=ci_ratio, tau=tau, memorized_tau=mem_tau, fraction_tau=frac_tau, ci_tau=ci_tau,
        copies=copies, confidence=confidence, n_boot=int(n_boot),
        seed=seed if seed is None or isinstance(seed, int | np.integer) else repr(seed),
        backend=index.backend, interval=interval, inputs=inputs, version=__version__)


def _describe_input(a) -> dict:
    """Shape and dtype of an input as given (for the report's record of its inputs)."""
    arr = np.asarray(a)
    return {"shape": list(arr.shape), "dtype": str(arr.dtype)}
