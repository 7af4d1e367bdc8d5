"""The main job in one call: exact-score sampling on the digits and memorization against the
end time (``mixscore demo``).

The exact empirical score under a VP schedule (Song et al.: beta 0.1..20, T = 1) is integrated
with the exact Gaussian-bridge sampler (``sampler="ddpm"``) on a geometric grid from T down to
the smallest end time; the state is saved where the grid passes each end time t_end, and every
sample is returned as the denoiser E[X_0 | x(t_end), t_end] there ("stopping early"; each
t_end uses the same trajectories). Memorization is the ratio rule d1/d2 < 1/3 with exact
nearest distances. Small t_end reproduces training digits; larger t_end (equivalently, a
regularized score, SCIENCE.md section 4) trades memorization for blends of training digits.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__, datasets
from .empirical import EmpiricalScore
from .memorization import memorization
from .nearest import NearestIndex
from .sampling import sample
from .schedules import VP

T_ENDS = (1e-3, 1e-2, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
RATIO = 1 / 3


@dataclass
class DemoSettings:
    n: int = 500
    steps: int = 200
    seed: int = 0
    t_ends: tuple = T_ENDS
    data: str = "digits"
    sampler: str = "ddpm"
    quick: bool = False

    @classmethod
    def make(cls, n: int | None = None, seed: int = 0, quick: bool = False, data: str = "digits"):
        s = cls(seed=seed, quick=quick, data=data)
        if quick:
            s.n, s.steps, s.t_ends = 64, 60, (1e-3, 0.1, 0.2, 0.5)
        if n is not None:
            s.n = n
        if isinstance(s.n, bool) or not isinstance(s.n, int | np.integer) or s.n < 1:
            raise ValueError(f"--n must be an integer >= 1, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"--seed must be an integer >= 0, got {seed!r}")
        return s


def load_data(name: str) -> tuple[np.ndarray, tuple[int, int] | None, str]:
    """Training set, image shape (or None) and a description for the report."""
    if name == "digits":
        return (datasets.digits(dtype=np.float32), (8, 8),
                "UCI optical digits (1797 8x8 images, scikit-learn's load_digits), pixels "
                "0..16 mapped to [-1, 1]")
    x = datasets.get(name)  # raises a clear error for unknown names
    return x.astype(np.float32), None, f"{name}"


OUTPUT_NAMES = {"json": "report.json", "markdown": "summary.md", "figure": "memorization.png"}


def check_output_folder(out: Path, force: bool = False) -> None:
    """Refuse an output folder that cannot be written, or that already holds the demo's files
    unless ``force``, before any work is done."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {str(out)!r} exists and is not a folder")
    existing = [n for n in OUTPUT_NAMES.values() if os.path.lexists(out / n)]
    if existing and not force:
        raise FileExistsError(f"--out {str(out)!r} already holds {', '.join(existing)}; add "
                              f"--force to replace them (nothing was written)")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {str(out)!r} is not writable ({str(parent)!r} is not)")


def run(settings: DemoSettings, progress: bool | None = None):
    """Sample and measure; returns (report, {t_end: (samples, MemorizationReport)}, train,
    image shape). Writes nothing."""
    X, shape, description = load_data(settings.data)
    schedule = VP()
    model = EmpiricalScore(X, schedule)
    ts = schedule.grid(settings.steps, "geometric", t_end=min(settings.t_ends))
    # the grid point nearest to each requested end time (in log t)
    steps = sorted({int(np.argmin(np.abs(np.log(ts) - np.log(t)))) for t in settings.t_ends})
    t0 = time.perf_counter()
    res = sample(model, settings.n, sampler=settings.sampler, grid=ts, seed=settings.seed,
                 save_steps=steps, progress=progress)
    seconds = time.perf_counter() - t0
    rows, finals = [], {}
    index = NearestIndex.from_model(model)  # one preparation of the digits for both
    for k, state in zip(steps, res.saved, strict=True):
        t = float(ts[k])
        out = model.denoise(state, t)
        rep = memorization(out, index, ratio=RATIO, seed=settings.seed)
        finals[t] = (out, rep)
        rows.append({
            "t_end": t, "step": int(k), "sigma": float(schedule.sigma(t)),
            "memorized_fraction": rep.fraction_ratio, "ci95": list(rep.ci_ratio),
            "d1_median": float(np.median(rep.d1)), "d1_mean": float(np.mean(rep.d1)),
            "ratio_median": float(np.median(rep.ratio)),
            "distinct_train_copied": int(rep.copies.n_distinct),
        })
    rows.sort(key=lambda r: r["t_end"])
    report = {
        "mixscore": __version__,
        "data": {"name": settings.data, "description": description, "n_train": int(X.shape[0]),
                 "dim": int(X.shape[1])},
        "settings": {
            "schedule": repr(schedule), "sampler": settings.sampler,
            "grid": f"geometric, {settings.steps} steps from T = {schedule.T} to "
                    f"{float(ts[-1]):g}", "start": res.settings["start"],
            "end_rule": "denoiser E[X_0 | x(t_end), t_end] at each t_end (same trajectories)",
            "n_samples": settings.n, "seed": settings.seed, "quick": settings.quick,
            "memorization_rule": f"d1/d2 < {RATIO:.4g} (exact Euclidean distances, data units)",
            "interval": "Wilson score, 95%",
        },
        "results": rows,
        "sampling_seconds": seconds,
    }
    return report, finals, X, shape


def write(report: dict, finals: dict, X, shape, out: Path, force: bool = False,
          plot: bool = True) -> dict:
    """The JSON report, the Markdown summary and (when ``plot`` and matplotlib is installed)
    the figure, written atomically into ``out``; existing ones are replaced only with
    ``force``. Returns {kind: path}; without the figure, ``"figure"`` maps to None and
    ``"figure_note"`` says why and how to get it."""
    out = Path(out)
    check_output_folder(out, force)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    names = dict(OUTPUT_NAMES)
    note = None
    if not plot:
        note = "figure skipped (--no-plot)"
    elif not has_matplotlib():
        note = ("figure skipped: matplotlib is not installed; pip install 'mixscore[plot]' "
                "(or pip install matplotlib) and run again for memorization.png")
    if note is not None:
        del names["figure"]
    tmp = Path(tempfile.mkdtemp(prefix=".mixscore-demo-", dir=out))
    try:
        (tmp / names["json"]).write_text(json.dumps(report, indent=1))
        (tmp / names["markdown"]).write_text(markdown(report))
        if "figure" in names:
            fig = figure(report, finals, X, shape)
            fig.savefig(tmp / names["figure"], dpi=110)
            _close(fig)
        for name in names.values():
            os.replace(tmp / name, out / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    files = {k: str(out / v) for k, v in names.items()}
    if note is not None:
        files["figure"] = None
        files["figure_note"] = note
    return files


def has_matplotlib() -> bool:
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        return False
    return True


def settings_text(report: dict) -> str:
    """The run's settings, one per line (printed before the table)."""
    s, d = report["settings"], report["data"]
    rows = [("data", f"{d['description']} (N = {d['n_train']}, D = {d['dim']})"),
            ("schedule", s["schedule"]), ("sampler", s["sampler"]), ("grid", s["grid"]),
            ("start", s["start"]), ("returned", s["end_rule"]),
            ("samples / seed", f"{s['n_samples']} / {s['seed']}"),
            ("memorized if", s["memorization_rule"]), ("interval", s["interval"])]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:>{width}}: {v}" for k, v in rows)


def table(report: dict) -> str:
    lines = ["| t_end | sigma(t_end) | memorized (d1/d2 < 1/3) | 95% CI | median d1 | "
             "distinct training points copied |", "|---|---|---|---|---|---|"]
    for r in report["results"]:
        lo, hi = r["ci95"]
        lines.append(f"| {r['t_end']:.4g} | {r['sigma']:.3f} | {r['memorized_fraction']:.3f} "
                     f"| [{lo:.3f}, {hi:.3f}] | {r['d1_median']:.3f} | "
                     f"{r['distinct_train_copied']} |")
    return "\n".join(lines)


def markdown(report: dict) -> str:
    s = report["settings"]
    return "\n".join([
        "# mixscore demo: memorization of the exact empirical score", "",
        f"Data: {report['data']['description']} (N = {report['data']['n_train']}, "
        f"D = {report['data']['dim']}).", "",
        f"Schedule {s['schedule']}; sampler `{s['sampler']}` (exact Gaussian-bridge step), "
        f"{s['grid']}; start {s['start']}; {s['n_samples']} samples, seed {s['seed']}. "
        f"Returned: {s['end_rule']}. Rule: {s['memorization_rule']}.", "",
        table(report), "",
        "Stopping at a small t_end returns training points (memorized fraction near 1); "
        "stopping earlier returns posterior means that blend several of them. Results depend on "
        "the sampler, grid, step count, t_end and end rule, all recorded in report.json.", ""])


def figure(report, finals, X, shape):
    """Memorized fraction against t_end; then, for three end times, the d1/d2 histogram and
    either generated images over their nearest training images (distance under each pair) or,
    for 2-D data, a scatter of the samples over the training points."""
    from .plotting import _plt, plot_nearest_grid, plot_ratio_histogram

    plt = _plt()
    rows = report["results"]
    name = report["data"]["name"]
    t = [r["t_end"] for r in rows]
    frac = np.array([r["memorized_fraction"] for r in rows])
    ci = np.array([r["ci95"] for r in rows])
    sigma = {r["t_end"]: r["sigma"] for r in rows}
    show = [t[0], t[len(t) // 2], t[-1]] if shape is not None or X.shape[1] == 2 else []
    fig = plt.figure(figsize=(12, 3.4 + 2.9 * len(show)), layout="constrained")
    subs = np.atleast_1d(fig.subfigures(1 + len(show), 1, height_ratios=[1.2] + [1] * len(show)))
    ax = subs[0].subplots()
    # the interval as error bars (clipped at 0 against rounding at 0% and 100%)
    bars = np.clip([frac - ci[:, 0], ci[:, 1] - frac], 0.0, None)
    ax.errorbar(t, frac, yerr=bars, marker="o", capsize=3)
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xticks(t, [f"{te:.3g}\n(sigma {sigma[te]:.3g})" for te in t], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("end time t_end (noise level sigma(t_end)), log scale")
    ax.set_ylabel("memorized fraction\n(d1/d2 < 1/3)")
    ax.set_title(f"Exact empirical score on {name}: memorization against the end time "
                 f"({report['settings']['interval']} intervals)")
    for sub, te in zip(subs[1:], show, strict=True):
        samples, rep = finals[te]
        left, right = sub.subfigures(1, 2, width_ratios=[1.2, 3])
        hist = plot_ratio_histogram(rep, left.subplots(), bins=25)
        hist.set_xlabel("d1 / d2 (nearest / second nearest)", fontsize=8)
        hist.legend(loc="upper center", fontsize=7)
        sub.suptitle(f"t_end = {te:.3g}, sigma(t_end) = {sigma[te]:.3g}: memorized "
                     f"{rep.fraction_ratio:.2f}", fontsize=10)
        if shape is not None:
            below = [f"d1 = {d:.2f}" for d in rep.d1[:10]]
            plot_nearest_grid(samples, X, rep.nn_index, shape, n=10, fig=right,
                              value_range=(-1.0, 1.0), labels=False, below=below)
        else:
            scatter_over_train(samples, X, right.subplots())
    return fig


def scatter_over_train(samples, X, ax):
    """2-D samples (colour) over the training points (grey)."""
    ax.scatter(X[:, 0], X[:, 1], s=6, c="0.6", label=f"training points ({len(X)})")
    ax.scatter(samples[:, 0], samples[:, 1], s=5, c="#c03030", alpha=0.6,
               label=f"samples ({len(samples)})")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper right", fontsize=7)
    return ax


def _close(fig) -> None:
    from .plotting import _plt

    _plt().close(fig)
