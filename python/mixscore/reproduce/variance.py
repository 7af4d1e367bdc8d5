"""Vastola, "Generalization through variance" (ICLR 2025 submission).

``variance-fig1``: maps of log tr C (the proxy score's covariance, Eq. 34: C = alpha^2 /
sigma^4 Cov_w(X_0)) over the plane for four six-point sets at three times of the EDM schedule
(sigma = t). At small t the covariance is concentrated on the boundaries between training points
(the Voronoi boundaries); at larger t, boundaries between groups of points at larger scales
are emphasized (the paper's Fig. 1). The paper does not print its six-point sets; these four
(a hexagon, a line, two triangles, a 2-4 split) are stand-ins with the same character.

The naive-estimator samples against the KDE baseline (the paper's Fig. 2) need
``ms.sample(..., sampler="naive" / "kde")``, which is not in this version: not reproduced yet.
"""

from __future__ import annotations

import numpy as np

from .. import datasets
from ..empirical import EmpiricalScore
from ..nearest import nearest
from ..schedules import EDM
from ._common import Check, Experiment, Outcome, mark_points

SETS = {
    "hexagon": datasets.hexagon(),
    "line": np.column_stack([np.linspace(-1.5, 1.5, 6), np.zeros(6)]),
    "two triangles": np.array(
        [[-1.2, 0.0], [-1.7, 0.5], [-1.7, -0.5], [1.2, 0.0], [1.7, 0.5], [1.7, -0.5]]
    ),
    "two and four": np.array(
        [[-1.5, 0.3], [-1.5, -0.3], [0.8, 0.8], [1.4, 0.8], [0.8, -0.8], [1.4, -0.8]]
    ),
}
FULL = dict(grid=241, times=[0.1, 0.3, 1.0], extent=2.5)
QUICK = dict(FULL, grid=61)


def fig1(p: dict, seed: int) -> Outcome:
    sch = EDM()
    g = np.linspace(-p["extent"], p["extent"], p["grid"])
    xx, yy = np.meshgrid(g, g)
    q = np.column_stack([xx.ravel(), yy.ravel()])
    maps, rows = {}, []
    for name, X in SETS.items():
        model = EmpiricalScore(X, sch)
        d = nearest(q, X, k=2).distances
        ratio = d[:, 0] / d[:, 1]
        for t in p["times"]:
            tr = model.stats(q, float(t), include=("trace_cov",)).trace_cov
            at_points = model.stats(X, float(t), include=("trace_cov",)).trace_cov
            # tr C underflows to 0 at the points for small t: shown clipped at 1e-12 of the max
            maps[name, t] = np.log(np.maximum(tr, 1e-12 * tr.max())).reshape(xx.shape)
            j = int(np.argmax(tr))
            rows.append(
                dict(
                    set=name,
                    t=float(t),
                    max_trace_cov=float(tr[j]),
                    trace_cov_at_points_max=float(at_points.max()),
                    d1_over_d2_at_argmax=float(ratio[j]),
                )
            )
    small = [r for r in rows if r["t"] == min(p["times"])]
    checks = [
        Check(
            "at the smallest t the covariance peaks on a Voronoi boundary (d1/d2 near 1 at "
            "the maximum) and is small at the training points",
            all(
                r["d1_over_d2_at_argmax"] > 0.9
                and r["trace_cov_at_points_max"] < 1e-3 * r["max_trace_cov"]
                for r in small
            ),
            ", ".join(f"{r['set']}: d1/d2 {r['d1_over_d2_at_argmax']:.2f}" for r in small),
        ),
    ]

    def figure(plt):
        nt = len(p["times"])
        fig, axes = plt.subplots(
            len(SETS), nt, figsize=(3.4 * nt + 1, 3.0 * len(SETS)), squeeze=False
        )
        for i, (name, X) in enumerate(SETS.items()):
            for j, t in enumerate(p["times"]):
                ax = axes[i, j]
                m = ax.pcolormesh(g, g, maps[name, t], shading="auto", cmap="viridis")
                fig.colorbar(m, ax=ax, label="log tr C")
                mark_points(ax, X, s=16, label="training points" if i == j == 0 else None)
                ax.set_aspect("equal")
                ax.set_title(f"{name}, t = sigma = {t:g}", fontsize=9)
                if i == len(SETS) - 1:
                    ax.set_xlabel("x1")
                if j == 0:
                    ax.set_ylabel("x2")
        axes[0, 0].legend(fontsize=7, loc="lower left")
        fig.suptitle(
            "Generalization through variance, Fig. 1: log tr C of the proxy score "
            "(EDM), small t left",
            fontsize=10,
        )
        fig.tight_layout()
        return fig

    return Outcome(
        settings={"schedule": repr(sch), "sets": {k: v for k, v in SETS.items()}},
        numbers={"rows": rows},
        checks=checks,
        table=rows,
        figures={"fig1": figure},
    )


EXPERIMENTS = [
    Experiment(
        "variance-fig1",
        "Vastola (generalization through variance)",
        "maps of log tr C for six-point sets at three times (Fig. 1)",
        fig1,
        FULL,
        QUICK,
    ),
]
