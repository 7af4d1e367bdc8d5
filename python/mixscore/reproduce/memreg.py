"""R. Baptista, A. Dasgupta, N. B. Kovachki, A. Oberai, A. M. Stuart, "Memorization and
regularization in generative diffusion models". The VE process of its Sec. 4.4 as its code runs
it (diffusion coefficient g = 10^t, sigma^2 = (100^t - 1) / (2 ln 10), T = 1; SCIENCE.md
section 9), the 20 points of NumPy seed 1, the reverse probability-flow ODE (here the
deterministic exponential integrator ``ddim``, exact once one point holds the posterior, on a
geometric grid), starts N(0, sigma(T)^2 I).

``memreg-trajectories``  Figs. 1-3: trajectories converge to data points, at the rate
                         |x(t) - x*| ~ sigma(t) (Thm 4.3); starts on the hyperplanes between
                         two or four symmetric points stay there and end on the Voronoi
                         boundary.
``memreg-tikhonov``      Figs. 4-5: memorized fraction (d1 < tau = 1e-2) against the Tikhonov
                         parameter c (Eq. 5.7): it falls as c grows.
``memreg-empirical-bayes`` Figs. 6-7: the same against the Empirical-Bayes parameter c
                         (Eq. 5.12, the unnormalized kernel sum, the paper's code).
``memreg-conditional``   Sec. 6 (Thm 6.4, corrected): with a unique label per point the
                         conditional score returns exactly that point; with groups, only points
                         of the label.
"""

from __future__ import annotations

import numpy as np

from .. import datasets
from ..empirical import EmpiricalScore
from ..memorization import memorization
from ..nearest import nearest
from ..regularizers import EmpiricalBayes, Tikhonov
from ..sampling import sample
from ..schedules import VE, ExpDiffusionVE
from ._common import Check, Experiment, Outcome, mark_points

PAPER = "Baptista et al. (memorization and regularization)"


def _schedule() -> ExpDiffusionVE:
    return VE.memorization_paper()


def _prior(sch, n: int, seed: int) -> np.ndarray:
    return float(sch.sigma(sch.T)) * np.random.default_rng(seed).standard_normal((n, 2))


def _voronoi_edges(ax, X, lim: float) -> None:
    """The Voronoi boundaries of X, drawn as the pixels of a fine grid whose nearest point
    differs from a neighbour's."""
    g = np.linspace(-lim, lim, 500)
    xx, yy = np.meshgrid(g, g)
    lab = nearest(np.column_stack([xx.ravel(), yy.ravel()]), X, k=1).indices[:, 0]
    lab = lab.reshape(xx.shape)
    edge = np.zeros_like(lab, bool)
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    ax.scatter(xx[edge], yy[edge], s=0.15, color="black", lw=0, label="Voronoi boundaries")


# --- Figs. 1-3: trajectories --------------------------------------------------------------------

TRAJ_FULL = dict(n_paths=30, steps=600, t_end=1e-8, n_square=40)
TRAJ_QUICK = dict(TRAJ_FULL, n_paths=12, steps=200, n_square=12)


def _square(half: float, m: int) -> np.ndarray:
    """m points per side on the boundary of the square [-half, half]^2, and the axis points."""
    s = np.linspace(-half, half, m, endpoint=False)
    sides = [
        np.column_stack([s, np.full(m, -half)]),
        np.column_stack([np.full(m, half), s]),
        np.column_stack([-s, np.full(m, half)]),
        np.column_stack([np.full(m, -half), -s]),
    ]
    axes = np.array([[0.0, half], [0.0, -half], [half, 0.0], [-half, 0.0]])
    return np.unique(np.concatenate(sides + [axes]), axis=0)


def trajectories(p: dict, seed: int) -> Outcome:
    sch = _schedule()
    X = datasets.gaussian_points(20)
    ts = sch.grid(p["steps"], "geometric", t_end=p["t_end"])
    every = np.arange(p["steps"] + 1)
    res = sample(
        EmpiricalScore(X, sch),
        start=_prior(sch, p["n_paths"], seed),
        sampler="ddim",
        grid=ts,
        save_steps=every,
        seed=seed,
    )
    path = res.saved  # (steps + 1, n, 2)
    d, idx = nearest(res.samples, X, k=1)
    limit = X[idx[:, 0]]
    dist = np.linalg.norm(path - limit[None], axis=2)  # (steps + 1, n)
    sig = sch.sigma(ts)
    late = (sig < 1e-2) & (sig > 10 * sig[-1])  # the last decades, above the grid end
    slope = np.polyfit(np.log(sig[late]), np.log(np.median(dist[late], axis=1)), 1)[0]
    # Fig. 3: two and four points at distance 1 from the origin; starts on a square of width
    # 2 sigma(T), including its points on the axes (the hyperplanes between the points)
    half = float(sch.sigma(sch.T))
    sym = {
        2: np.array([[1.0, 0.0], [-1.0, 0.0]]),
        4: np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]]) / np.sqrt(2),
    }
    fig3, rows = {}, []
    for k, P in sym.items():
        start = _square(half, p["n_square"])
        r = sample(
            EmpiricalScore(P, sch),
            start=start,
            sampler="ddim",
            grid=ts,
            save_steps=every[::4],
            seed=seed,
        )
        dd = nearest(r.samples, P, k=1).distances[:, 0]
        # the hyperplanes between the points: x1 = 0 (two points), both axes (four points)
        on_plane = (start[:, 0] == 0) if k == 2 else (start[:, 0] == 0) | (start[:, 1] == 0)
        at_point = dd < 1e-2
        fig3[k] = (P, r)
        rows.append(
            dict(
                points=k,
                starts=len(start),
                end_at_data_point=int(at_point.sum()),
                starts_on_hyperplanes=int(on_plane.sum()),
                hyperplane_starts_ending_off_the_points=int((on_plane & ~at_point).sum()),
                # within 1e-9 (rounding in the 4-term sums of four points)
                hyperplane_starts_still_on_them=int(
                    (on_plane & (np.min(np.abs(r.samples), axis=1) < 1e-9)).sum()
                ),
            )
        )
    checks = [
        Check(
            "every trajectory from N(0, sigma(T)^2 I) converges to a data point",
            float(d.max()) < 1e-2,
            f"largest final distance {d.max():.3g}",
        ),
        Check(
            "the rate is universal: |x(t) - x*| ~ sigma(t) (slope 1 in log-log)",
            abs(slope - 1) < 0.1,
            f"fitted slope {slope:.3f} for sigma in [{sig[late].min():.2g}, {sig[late].max():.2g}]",
        ),
    ]
    for r in rows:
        checks.append(
            Check(
                f"{r['points']} points: starts off the hyperplanes end at data points; starts on "
                "them stay there and end on the Voronoi boundary",
                r["end_at_data_point"] == r["starts"] - r["starts_on_hyperplanes"]
                and r["hyperplane_starts_ending_off_the_points"]
                == r["starts_on_hyperplanes"]
                == r["hyperplane_starts_still_on_them"],
                f"{r['end_at_data_point']} of {r['starts']} at data points, "
                f"{r['hyperplane_starts_still_on_them']} of {r['starts_on_hyperplanes']} on the "
                "hyperplanes",
            )
        )

    def fig_paths(plt):
        fig, axes = plt.subplots(1, 2, figsize=(12, 5))
        ax = axes[0]
        lim = 3.0
        _voronoi_edges(ax, X, lim)
        for i in range(min(4, path.shape[1])):
            ax.plot(
                path[:, i, 0],
                path[:, i, 1],
                color="#d62728",
                lw=1.2,
                label="trajectories" if i == 0 else None,
            )
            ax.plot(*path[-1, i], "*", color="#d62728", ms=10)
        mark_points(ax, X, color="#1f77b4", label="data points")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        ax.set_title("Fig. 1: reverse ODE trajectories (4 shown)", fontsize=10)
        ax.legend(fontsize=7, loc="lower left")
        ax = axes[1]
        ax.loglog(sig, dist, color="#1f77b4", lw=0.6, alpha=0.6)
        ax.loglog(
            sig[late],
            np.exp(np.log(np.median(dist[late], axis=1)).mean() - np.log(sig[late]).mean())
            * sig[late],
            "k--",
            lw=1.5,
            label=f"slope 1 (fitted {slope:.3f})",
        )
        ax.invert_xaxis()
        ax.set_xlabel("sigma(t) (decreasing: reverse time)")
        ax.set_ylabel("|x(t) - limit point|")
        ax.set_title(f"Fig. 2: convergence of {dist.shape[1]} trajectories", fontsize=10)
        ax.legend(fontsize=8)
        fig.suptitle(
            "Memorization paper, VE (g = 10^t), 20 points: the exact score memorizes", fontsize=10
        )
        fig.tight_layout()
        return fig

    def fig_sym(plt):
        fig, axes = plt.subplots(1, 2, figsize=(11, 5))
        for ax, (k, (P, r)) in zip(axes, fig3.items(), strict=True):
            for i in range(r.saved.shape[1]):
                ax.plot(r.saved[:, i, 0], r.saved[:, i, 1], color="gray", lw=0.5)
            ax.plot(
                r.samples[:, 0], r.samples[:, 1], "o", color="#d62728", ms=3, label="end points"
            )
            mark_points(ax, P, color="#1f77b4", label="data points", s=50)
            ax.axvline(0, color="black", lw=0.5, ls=":", label="separating hyperplanes")
            if k == 4:
                ax.axhline(0, color="black", lw=0.5, ls=":")
            ax.set_aspect("equal")
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
            ax.set_title(f"Fig. 3: N = {k}; starts on a square of width 2 sigma(T)", fontsize=10)
            ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        return fig

    return Outcome(
        settings={
            "schedule": repr(sch),
            "sampling": res.settings,
            "start": "N(0, sigma(T)^2 I), numpy default_rng(seed)",
            "data": "datasets.gaussian_points(20) (NumPy seed 1)",
        },
        numbers={
            "final_distance_max": float(d.max()),
            "rate_slope": float(slope),
            "limit_index": idx[:, 0],
            "symmetric": rows,
        },
        checks=checks,
        table=rows,
        figures={"fig1_fig2": fig_paths, "fig3": fig_sym},
    )


# --- Figs. 4-7: regularized scores --------------------------------------------------------------

TIK_FULL = dict(
    n=1000,
    steps=400,
    t_end=1e-8,
    tau=1e-2,
    c_values=[1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
)
TIK_QUICK = dict(TIK_FULL, n=150, steps=120, c_values=[1e-5, 1e-3, 1e-1])
EB_FULL = dict(TIK_FULL, c_values=[1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0])
EB_QUICK = dict(EB_FULL, n=150, steps=120, c_values=[1e-3, 0.1, 3.0])


def _curve(p: dict, seed: int, make, label: str, fig_names: tuple[str, str]) -> Outcome:
    sch = _schedule()
    X = datasets.gaussian_points(20)
    ts = sch.grid(p["steps"], "geometric", t_end=p["t_end"])
    start = _prior(sch, p["n"], seed)
    rows, samples, settings = [], {}, None
    for c in p["c_values"]:
        res = sample(
            EmpiricalScore(X, sch, regularizer=make(c)),
            start=start,
            sampler="ddim",
            grid=ts,
            seed=seed,
        )
        rep = memorization(res.samples, X, tau=p["tau"], seed=seed)
        samples[c] = res.samples
        settings = res.settings
        lo, hi = rep.ci_tau
        rows.append(
            dict(
                c=float(c),
                memorized=rep.fraction_tau,
                ci_low=lo,
                ci_high=hi,
                d1_median=float(np.median(rep.d1)),
            )
        )
    f = np.array([r["memorized"] for r in rows])
    checks = [
        Check(
            f"the memorized fraction (d1 < {p['tau']:g}) falls as c grows",
            bool(np.all(np.diff(f) <= 0.05)) and f[0] - f[-1] > 0.5,
            " -> ".join(f"{v:.2f}" for v in f),
        ),
        Check(
            "the smallest c memorizes, the largest does not",
            f[0] >= 0.9 and f[-1] <= 0.1,
            f"{f[0]:.2f} at c = {rows[0]['c']:g}, {f[-1]:.2f} at c = {rows[-1]['c']:g}",
        ),
    ]
    show = [p["c_values"][0], p["c_values"][len(p["c_values"]) // 2], p["c_values"][-1]]

    def fig_samples(plt):
        fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
        for ax, c in zip(axes, show, strict=True):
            s = samples[c][:100]
            mark_points(ax, X, color="#1f77b4", label="data points")
            ax.scatter(
                s[:, 0],
                s[:, 1],
                s=40,
                facecolor="none",
                edgecolor="#d62728",
                label="generated (100)",
                zorder=6,
            )
            ax.set_title(f"{label}, c = {c:g}", fontsize=10)
            ax.set_xlim(-3, 3)
            ax.set_ylim(-3, 3)
            ax.set_aspect("equal")
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
            ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        return fig

    def fig_curve(plt):
        fig, ax = plt.subplots(figsize=(6, 4))
        cs = np.array([r["c"] for r in rows])
        lo = np.array([r["ci_low"] for r in rows])
        hi = np.array([r["ci_high"] for r in rows])
        ax.errorbar(
            cs, f, yerr=[f - lo, hi - f], marker="o", capsize=3, label=f"{p['n']} samples, 95% CI"
        )
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(f"{label} parameter c")
        ax.set_ylabel(f"memorized fraction (d1 < {p['tau']:g})")
        ax.set_title(f"{label}: memorization against c", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    return Outcome(
        settings={
            "schedule": repr(sch),
            "sampling": settings,
            "regularizer": repr(make(p["c_values"][0])),
            "start": "N(0, sigma(T)^2 I), the same draws for every c",
            "data": "datasets.gaussian_points(20) (NumPy seed 1)",
        },
        numbers={"rows": rows},
        checks=checks,
        table=rows,
        figures={fig_names[0]: fig_samples, fig_names[1]: fig_curve},
    )


def tikhonov(p: dict, seed: int) -> Outcome:
    return _curve(p, seed, Tikhonov, "Tikhonov", ("fig4", "fig5"))


def empirical_bayes(p: dict, seed: int) -> Outcome:
    return _curve(p, seed, EmpiricalBayes, "Empirical Bayes", ("fig6", "fig7"))


# --- Sec. 6: conditional scores ----------------------------------------------------------------

COND_FULL = dict(n_per_label=50, steps=300, t_end=1e-8, tau=1e-2, groups=4, labels_sampled=20)
COND_QUICK = dict(COND_FULL, n_per_label=6, steps=60, labels_sampled=5)


def conditional(p: dict, seed: int) -> Outcome:
    sch = _schedule()
    X = datasets.gaussian_points(20)
    n_x = X.shape[0]
    ts = sch.grid(p["steps"], "geometric", t_end=p["t_end"])
    rows, ends = [], {}
    for kind, labels in (("unique", np.arange(n_x)), ("groups", np.arange(n_x) % p["groups"])):
        model = EmpiricalScore(X, sch, labels=labels)
        y = np.repeat(np.unique(labels)[: p["labels_sampled"]], p["n_per_label"])
        res = sample(
            model, start=_prior(sch, y.size, seed), sampler="ddim", grid=ts, seed=seed, y=y
        )
        d, i = nearest(res.samples, X, k=1)
        hit = d[:, 0] < p["tau"]
        right = labels[i[:, 0]] == y
        ends[kind] = (res.samples, y, labels)
        exact_point = (i[:, 0] == y) if kind == "unique" else np.ones_like(hit)
        per_group = [int(np.unique(i[(y == g) & hit, 0]).size) for g in np.unique(y)]
        rows.append(
            dict(
                labels=kind,
                samples=int(y.size),
                at_a_data_point=float(hit.mean()),
                of_its_label=float(right.mean()),
                at_its_own_point=float(exact_point.mean()),
                min_distinct_points_per_label=min(per_group),
            )
        )
    u, g = rows
    checks = [
        Check(
            "unique labels: every sample conditioned on label j ends at x_j",
            u["at_a_data_point"] == 1.0 and u["at_its_own_point"] == 1.0,
            f"{u['at_its_own_point']:.3f} at their own point",
        ),
        Check(
            "groups: every sample ends at a point of its own label, and not always the same one",
            g["at_a_data_point"] == 1.0
            and g["of_its_label"] == 1.0
            and g["min_distinct_points_per_label"] >= 2,
            f"{g['of_its_label']:.3f} of its label; at least "
            f"{g['min_distinct_points_per_label']} distinct points per label",
        ),
    ]

    def figure(plt):
        fig, axes = plt.subplots(1, 2, figsize=(11, 5.6), layout="constrained")
        cmap = plt.get_cmap("tab20")
        for ax, (kind, (s, y, labels)) in zip(axes, ends.items(), strict=True):
            for j, lab in enumerate(np.unique(labels)):
                c = cmap(j % 20)
                pts = X[labels == lab]
                ax.scatter(
                    pts[:, 0],
                    pts[:, 1],
                    s=90,
                    color=c,
                    edgecolor="black",
                    zorder=5,
                    label=f"data, label {lab}" if kind == "groups" else None,
                )
                ss = s[y == lab]
                ax.scatter(  # in the colour of the label it was conditioned on
                    ss[:, 0],
                    ss[:, 1],
                    s=70,
                    marker="X",
                    color=c,
                    edgecolor="black",
                    linewidth=0.8,
                    zorder=6,
                )
            if kind == "unique":  # one colour per point: no per-label legend entries
                ax.scatter([], [], s=90, color="white", edgecolor="black",
                           label="data (colour: its label)")  # fmt: skip
            ax.scatter([], [], s=70, marker="X", color="white", edgecolor="black",
                       label="samples (colour: the label conditioned on)")  # fmt: skip
            ax.set_aspect("equal")
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
            ax.set_title(
                f"{kind} labels: samples (X) conditioned on {len(np.unique(y))} labels",
                fontsize=10,
            )
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3)
        fig.suptitle(
            "Memorization paper, Sec. 6: conditional exact scores (Thm 6.4, corrected)", fontsize=10
        )
        return fig

    return Outcome(
        settings={
            "schedule": repr(sch),
            "sampler": "ddim",
            "steps": p["steps"],
            "grid": "geometric",
            "start": "N(0, sigma(T)^2 I)",
        },
        numbers={"rows": rows},
        checks=checks,
        table=rows,
        figures={"conditional": figure},
    )


EXPERIMENTS = [
    Experiment(
        "memreg-trajectories",
        PAPER,
        "VE trajectories to data points and Voronoi boundaries (Figs. 1-3)",
        trajectories,
        TRAJ_FULL,
        TRAJ_QUICK,
    ),
    Experiment(
        "memreg-tikhonov",
        PAPER,
        "memorized fraction against Tikhonov c (Figs. 4-5)",
        tikhonov,
        TIK_FULL,
        TIK_QUICK,
    ),
    Experiment(
        "memreg-empirical-bayes",
        PAPER,
        "memorized fraction against Empirical-Bayes c (Figs. 6-7)",
        empirical_bayes,
        EB_FULL,
        EB_QUICK,
    ),
    Experiment(
        "memreg-conditional",
        PAPER,
        "conditional scores, unique and grouped labels (Sec. 6)",
        conditional,
        COND_FULL,
        COND_QUICK,
    ),
]
