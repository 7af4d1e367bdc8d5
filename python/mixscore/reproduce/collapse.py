"""The collapse curve on the digits (Biroli, Bonnaire, de Bortoli and Mezard, 2024): mean
posterior entropy of x ~ p_t^N against t with the collapse time marked (``ms.analysis.
collapse_curve``), and the memorized fraction (d1/d2 < 1/3) of exact samples against t: below
the collapse time the exact dynamics copy the training set.

``collapse-digits``: VP schedule of Song et al.; samples with the exact Gaussian-bridge sampler
(``ddpm``) from the exact start on a geometric grid, each returned as the denoiser at the saved
times (the same trajectories for every t, as in ``mixscore demo``).
"""

from __future__ import annotations

import numpy as np

from .. import datasets
from ..analysis import collapse_curve
from ..empirical import EmpiricalScore
from ..memorization import memorization
from ..sampling import sample
from ..schedules import VP
from ._common import Check, Experiment, Outcome

FULL = dict(n=500, n_curve=1000, steps=300, t_min=1e-3, t_max=1.0, points=16)
QUICK = dict(FULL, n=48, n_curve=100, steps=60, points=6)


def collapse(p: dict, seed: int) -> Outcome:
    X = datasets.digits(dtype=np.float32)
    sch = VP()
    model = EmpiricalScore(X, sch)
    times = np.geomspace(p["t_min"], p["t_max"], p["points"])
    cc = collapse_curve(model, times, n=p["n_curve"], seed=seed)
    ts = sch.grid(p["steps"], "geometric", t_end=p["t_min"])
    steps = sorted({int(np.argmin(np.abs(np.log(ts) - np.log(t)))) for t in times})
    res = sample(model, p["n"], sampler="ddpm", grid=ts, start="exact", seed=seed, save_steps=steps)
    rows = []
    for k, state in zip(steps, res.saved, strict=True):
        rep = memorization(model.denoise(state, float(ts[k])), X, seed=seed)
        rows.append(dict(t=float(ts[k]), memorized=rep.fraction_ratio))
    rows.sort(key=lambda r: r["t"])
    t_mem = np.array([r["t"] for r in rows])
    frac = np.array([r["memorized"] for r in rows])
    tc = cc.collapse_time
    below, above = frac[t_mem < tc / 2], frac[t_mem > 2 * tc]
    table = [
        dict(t=float(t), mean_entropy=float(h), mean_n_eff=float(ne))
        for t, h, ne in zip(cc.times, cc.entropy, cc.n_eff, strict=True)
    ]
    checks = [
        Check(
            "the mean posterior entropy falls as t decreases",
            bool(np.all(np.diff(cc.entropy) >= -1e-9)),
            f"{cc.entropy[-1]:.3g} nats at t = {cc.times[-1]:.3g} -> {cc.entropy[0]:.3g} at "
            f"t = {cc.times[0]:.3g}",
        ),
        Check(
            "a collapse time exists inside the range of t",
            bool(np.isfinite(tc) and times[0] < tc < times[-1]),
            f"t_c = {tc:.4g}",
        ),
        Check(
            "exact samples are copies well below the collapse time and not well above it",
            below.size > 0 and above.size > 0 and below.min() >= 0.9 and above.max() <= 0.5,
            f"memorized {below.min() if below.size else float('nan'):.2f} (min) for "
            f"t < t_c/2, {above.max() if above.size else float('nan'):.2f} (max) for "
            "t > 2 t_c",
        ),
    ]

    def figure(plt):
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        cc.plot(ax)
        ax3 = ax.twinx()
        ax3.spines["right"].set_position(("axes", 1.15))
        ax3.semilogx(t_mem, frac, "o-", color="#2ca02c", label="memorized fraction of samples")
        ax3.set_ylabel("memorized fraction (d1/d2 < 1/3)", color="#2ca02c")
        ax3.set_ylim(-0.03, 1.03)
        ax3.legend(loc="center left", fontsize=8)
        ax.set_title(
            "Collapse on the digits (N = 1797, VP): entropy, n_eff and memorization", fontsize=10
        )
        fig.tight_layout()
        return fig

    return Outcome(
        settings={
            "schedule": repr(sch),
            "sampling": res.settings,
            "curve": f"collapse_curve(n = {p['n_curve']}, threshold log 2)",
        },
        numbers={"collapse_time": tc, "curve": table, "memorized": rows},
        checks=checks,
        table=rows,
        figures={"collapse": figure},
    )


EXPERIMENTS = [
    Experiment(
        "collapse-digits",
        "Biroli et al. 2024 (toolkit issue)",
        "collapse curve and memorized fraction against t on the digits",
        collapse,
        FULL,
        QUICK,
    ),
]
