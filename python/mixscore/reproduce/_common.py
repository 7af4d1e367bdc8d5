"""What every reproduction shares: its description (``Experiment``), its result (``Outcome``:
settings, numbers, the paper's claims checked against those numbers, a summary table and lazy
figures), and writing the result (a JSON and PNG files) into a folder.

Figures are built only when written, so running an experiment needs no matplotlib; without it
the JSON is written and the result says how to get the figures.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__

JSON_NAME = "result.json"


@dataclass
class Check:
    """One qualitative claim of the paper and whether this run's numbers show it."""

    claim: str
    holds: bool
    detail: str = ""


@dataclass
class Outcome:
    """The result of one experiment.

    settings  every parameter of the run (sizes, schedule, sampler, grid, t_end, start, end rule,
              seed), so that the run can be repeated exactly
    numbers   every number the figures and the summary show (JSON-ready)
    checks    the paper's qualitative claims, each checked against ``numbers``
    table     rows (dicts with the same keys) of the printed summary table
    figures   file stem -> function(plt) returning a matplotlib Figure (built on writing)
    """

    settings: dict
    numbers: dict
    checks: list[Check] = field(default_factory=list)
    table: list[dict] = field(default_factory=list)
    figures: dict[str, Callable] = field(default_factory=dict)
    seconds: float = 0.0
    name: str = ""
    paper: str = ""
    title: str = ""

    @property
    def all_hold(self) -> bool:
        return all(c.holds for c in self.checks)

    def to_dict(self) -> dict:
        return {
            "experiment": self.name,
            "paper": self.paper,
            "title": self.title,
            "mixscore": __version__,
            "seconds": self.seconds,
            "settings": self.settings,
            "numbers": self.numbers,
            "checks": [
                {"claim": c.claim, "holds": bool(c.holds), "detail": c.detail} for c in self.checks
            ],
            "table": self.table,
        }

    def summary(self) -> str:
        """The summary table and the checked claims as plain text (Markdown table)."""
        lines = [f"{self.name}: {self.title} ({self.paper})", ""]
        if self.table:
            keys = list(self.table[0])
            lines.append("| " + " | ".join(keys) + " |")
            lines.append("|" + "---|" * len(keys))
            for row in self.table:
                lines.append("| " + " | ".join(_fmt(row.get(k)) for k in keys) + " |")
            lines.append("")
        for c in self.checks:
            mark = "holds" if c.holds else "DOES NOT HOLD"
            lines.append(f"[{mark}] {c.claim}" + (f" ({c.detail})" if c.detail else ""))
        lines.append(f"time: {self.seconds:.1f} s")
        return "\n".join(lines)


@dataclass(frozen=True)
class Experiment:
    """A registered reproduction: ``run(params, seed)`` returns an ``Outcome``; ``full`` and
    ``quick`` are the default parameters at full and reduced (test) size."""

    name: str
    paper: str
    title: str
    run: Callable[[dict, int], Outcome]
    full: dict
    quick: dict

    def params(self, quick: bool, overrides: dict | None) -> dict:
        """The default parameters of the size, with ``overrides`` (only known names)."""
        p = dict(self.quick if quick else self.full)
        unknown = sorted(set(overrides or {}) - set(p))
        if unknown:
            raise ValueError(
                f"experiment {self.name!r} has no parameter(s) {unknown}; its "
                f"parameters are {sorted(p)}"
            )
        p.update(overrides or {})
        return p

    def execute(self, quick: bool = False, seed: int = 0, overrides: dict | None = None) -> Outcome:
        """Run at full or reduced size and time it."""
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        params = self.params(quick, overrides)
        t0 = time.perf_counter()
        out = self.run(params, int(seed))
        out.seconds = time.perf_counter() - t0
        out.name, out.paper, out.title = self.name, self.paper, self.title
        out.settings = {"quick": bool(quick), "seed": int(seed), **params, **out.settings}
        return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def _jsonable(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.bool_):
        return bool(o)
    return str(o)


def check_folder(out: Path, names: list[str], force: bool) -> None:
    """Refuse an output folder that is a file, or holds files we would replace (without
    ``force``), before any work."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {str(out)!r} exists and is not a folder")
    existing = [n for n in names if os.path.lexists(out / n)]
    if existing and not force:
        raise FileExistsError(
            f"--out {str(out)!r} already holds {', '.join(existing)}; add "
            "--force to replace them (nothing was written)"
        )


def output_names(outcome_or_figures) -> list[str]:
    figs = getattr(outcome_or_figures, "figures", outcome_or_figures)
    return [JSON_NAME] + [f"{stem}.png" for stem in figs]


def write(outcome: Outcome, out, force: bool = False) -> dict:
    """Write ``result.json`` and one PNG per figure into ``out``; returns {kind: path}. Without
    matplotlib only the JSON is written (its ``figures`` entry says how to get them)."""
    from ..cli._outputs import write_atomic

    out = Path(out)
    check_folder(out, output_names(outcome), force)
    out.mkdir(parents=True, exist_ok=True)
    files, data = {}, outcome.to_dict()
    try:
        from ..plotting import _plt

        plt = _plt()
    except ImportError:
        plt = None
        data["figures"] = "not written: matplotlib is missing (pip install 'mixscore[plot]')"
    if plt is not None:
        import io

        data["figures"] = []
        for stem, make in outcome.figures.items():
            fig = make(plt)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110)
            plt.close(fig)
            path = out / f"{stem}.png"
            write_atomic(str(path), buf.getvalue())
            files[stem] = str(path)
            data["figures"].append(path.name)
    text = json.dumps(data, indent=1, default=_jsonable, allow_nan=True)
    write_atomic(str(out / JSON_NAME), text.encode())
    files["json"] = str(out / JSON_NAME)
    return files


def mark_points(ax, X, label: str = "training points", **kw) -> None:
    """Training points as red dots on a 2-D axis (the papers' convention)."""
    X = np.asarray(X)
    style = {"color": "#d62728", "s": 28, "zorder": 5, "edgecolor": "black", "linewidth": 0.5}
    style.update(kw)
    ax.scatter(X[:, 0], X[:, 1], label=label, **style)
