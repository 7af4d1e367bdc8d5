"""Y. Lu, Z. Wang, G. Bal, "Mathematical analysis of singularities in the diffusion model under
the submanifold assumption" (the bounded-target paper). OU forward process (alpha = e^{-t/2},
sigma^2 = 1 - e^{-t}, T = 10), its splitting sampler (Eq. 23) on its exponential grid (Eq. 41,
gamma corrected: SCIENCE.md section 9).

``bounded-five-points``    five points in the plane (Fig. 5, Table 1): every sample is absorbed
                           by a training point, each with frequency about 1/5 (from the prior
                           N(0, I) as in the paper, and from the exact start).
``bounded-twenty-points``  twenty points, the t_1 study (Fig. 7): the error of the generated
                           distribution (distance to the nearest training point) falls with t_1.
``bounded-spiral``         points on the spiral (U cos U, U sin U), U ~ Unif[1, 13] (Sec. 4.1):
                           the exact empirical score blows up off the data as t -> 0 and its
                           samples copy training points; the blurred data's score (Thm 3.7,
                           ``Smoothing(h)``) stays bounded and its samples lie near the spiral
                           without copying.
``bounded-line``           the line R x {0} with X_1 ~ N(0, 1) (Sec. 4.1, Eq. 62): the targets
                           f (denoiser, the paper's CEM), S = -score and eps of the exact oracle
                           at X_eva = (1, -0.1) against the closed forms; f is bounded, S and
                           eps blow up; samples of the exact oracle lie on the line.

The paper's trained networks (CEM, SGM, DDPM comparisons of Figs. 1-4) are not reproduced: these
experiments use the exact scores, which are what those networks approximate.
"""

from __future__ import annotations

import numpy as np

from .. import datasets
from ..continuous import LineNormalData
from ..empirical import EmpiricalScore
from ..geometry import distance_to_spiral, spiral
from ..memorization import memorization
from ..regularizers import Smoothing
from ..sampling import sample
from ..schedules import OU
from ._common import Check, Experiment, Outcome, mark_points

PAPER = "Lu, Wang, Bal (bounded target)"
FIG5_TIMES = (10.0, 5.8718, 3.2356, 0.7518, 0.0216)


def _snap(ts, times):
    """Grid indices nearest (in log t) to the requested times."""
    return [int(np.argmin(np.abs(np.log(ts) - np.log(t)))) for t in times]


# --- five points -------------------------------------------------------------------------------

FIVE_FULL = dict(n=10000, steps=1000, t1=1e-4, tau=0.05, data_seed=0)
FIVE_QUICK = dict(FIVE_FULL, n=1000, steps=400)


def five_points(p: dict, seed: int) -> Outcome:
    X = datasets.five_points(p["data_seed"])
    sch = OU()
    model = EmpiricalScore(X, sch)
    ts = sch.grid(p["steps"], "exponential", t_end=p["t1"])
    show = _snap(ts, FIG5_TIMES) + [p["steps"]]
    n = p["n"]
    rows, runs, settings = [], {}, {}
    for start, sd in (("prior", seed), ("exact", seed + 1)):  # independent noise for each
        res = sample(model, n, sampler="splitting", grid=ts, start=start, seed=sd, save_steps=show)
        rep = memorization(res.samples, X, tau=p["tau"], seed=seed)
        freq = rep.copies.counts / n
        runs[start] = (res, freq)
        settings[start] = res.settings
        rows.append(
            dict(
                start=start,
                **{f"point {i + 1}": float(f) for i, f in enumerate(freq)},
                absorbed=rep.fraction_tau,
                chi2_p=rep.copies.p_value,
            )
        )
    sd = np.sqrt(0.2 * 0.8 / n)
    checks = []
    for r in rows:
        f = np.array([r[f"point {i + 1}"] for i in range(5)])
        checks.append(
            Check(
                f"start {r['start']}: every sample is absorbed by a training point",
                r["absorbed"] == 1.0,
                f"fraction within tau = {p['tau']}: {r['absorbed']:.4f}",
            )
        )
        checks.append(
            Check(
                f"start {r['start']}: each point is hit with frequency about 1/5",
                r["chi2_p"] > 1e-3 and np.abs(f - 0.2).max() < 4.5 * sd,
                f"max |f - 0.2| = {np.abs(f - 0.2).max():.4f} (binomial sd "
                f"{sd:.4f}), chi2 p = {r['chi2_p']:.3g}",
            )
        )
    numbers = dict(
        points=X,
        frequencies={k: v[1] for k, v in runs.items()},
        binomial_sd=float(sd),
        shown_times=ts[show],
    )

    def figure(plt):
        res, freq = runs["prior"]
        k = len(show)
        cols = (k + 1) // 2
        fig = plt.figure(figsize=(3.0 * cols + 4.2, 6.6))
        gs = fig.add_gridspec(2, cols + 1, width_ratios=[1] * cols + [1.3])
        for i, (s, j) in enumerate(zip(res.saved, show, strict=False)):
            ax = fig.add_subplot(gs[i // cols, i % cols])
            mark_points(ax, X, s=18, label="training points" if i == 0 else None)
            # samples drawn over the points: at small t they sit on them
            ax.scatter(
                s[:2000, 0],
                s[:2000, 1],
                s=2,
                alpha=0.3,
                color="#1f77b4",
                lw=0,
                zorder=6,
                label="samples (prior start)" if i == 0 else None,
            )
            ax.set_title(f"t = {ts[j]:.4g}", fontsize=9)
            ax.set_xlim(-3.5, 3.5)
            ax.set_ylim(-3.5, 3.5)
            ax.set_aspect("equal")
            if i // cols == 1:
                ax.set_xlabel("x1")
            ax.set_ylabel("x2")
            if i == 0:
                ax.legend(fontsize=7, loc="lower left", markerscale=2)
                for m, pt in enumerate(X):  # the numbers of the bar chart
                    ax.annotate(str(m + 1), pt, xytext=(5, 4), textcoords="offset points")
        ax = fig.add_subplot(gs[:, cols])
        pos = np.arange(5)
        ax.bar(pos - 0.2, runs["prior"][1], 0.4, label="prior N(0, I)")
        ax.bar(pos + 0.2, runs["exact"][1], 0.4, label="exact start")
        ax.axhline(0.2, color="black", ls=":", lw=1, label="1/5")
        top = max(np.max(runs["prior"][1]), np.max(runs["exact"][1]))
        ax.set_ylim(0, max(0.3, 1.3 * top))
        ax.set_xticks(pos, [str(i + 1) for i in pos])
        ax.set_xlabel("training point")
        ax.set_ylabel("frequency")
        ax.set_title("Table 1: absorption frequencies", fontsize=9)
        ax.legend(fontsize=8, loc="upper right", ncol=3)
        fig.suptitle(
            f"Bounded-target Fig. 5 / Table 1: five points, OU, splitting sampler, "
            f"exponential grid ({p['steps']} steps, t1 = {p['t1']:g}), n = {n}",
            fontsize=10,
        )
        fig.tight_layout()
        return fig

    return Outcome(
        settings={
            "schedule": repr(sch),
            "sampling": settings,
            "data": f"datasets.five_points({p['data_seed']}) (the paper does "
            "not print its five points)",
        },
        numbers=numbers,
        checks=checks,
        table=rows,
        figures={"fig5_table1": figure},
    )


# --- twenty points: the t_1 study --------------------------------------------------------------

TWENTY_FULL = dict(n=2000, steps=200, t1_values=[1e-1, 1e-2, 1e-3, 1e-4], tau=0.05)
TWENTY_QUICK = dict(TWENTY_FULL, n=400, steps=80)


def twenty_points(p: dict, seed: int) -> Outcome:
    X = datasets.gaussian_points(20)
    sch = OU()
    model = EmpiricalScore(X, sch)
    rows, samples, settings = [], {}, {}
    for t1 in p["t1_values"]:
        ts = sch.grid(p["steps"], "exponential", t_end=t1)
        res = sample(model, p["n"], sampler="splitting", grid=ts, seed=seed)
        rep = memorization(res.samples, X, tau=p["tau"], seed=seed)
        samples[t1] = res.samples
        settings[str(t1)] = res.settings
        rows.append(
            dict(
                t1=float(t1),
                mean_d1=float(rep.d1.mean()),
                median_d1=float(np.median(rep.d1)),
                within_tau=rep.fraction_tau,
                sigma_t1=float(sch.sigma(t1)),
            )
        )
    d1 = np.array([r["mean_d1"] for r in rows])
    order = np.argsort([r["t1"] for r in rows])
    checks = [
        Check(
            "smaller t1 gives a smaller error (mean distance to the nearest training "
            "point falls as t1 decreases)",
            bool(np.all(np.diff(d1[order]) > 0)),
            ", ".join(f"t1 = {r['t1']:g}: {r['mean_d1']:.3g}" for r in rows),
        )
    ]

    def figure(plt):
        k = len(rows)
        fig, axes = plt.subplots(1, k, figsize=(3.3 * k, 3.9), layout="constrained")
        for ax, r in zip(np.atleast_1d(axes), rows, strict=True):
            s = samples[r["t1"]]
            ax.scatter(  # over the points: at small t1 the samples sit on them
                s[:, 0], s[:, 1], s=3, alpha=0.4, color="#1f77b4", lw=0, label="samples", zorder=6
            )
            mark_points(ax, X, s=14)
            ax.set_title(f"t1 = {r['t1']:g}: mean d1 = {r['mean_d1']:.3g}", fontsize=9)
            ax.set_xlim(-3, 3)
            ax.set_ylim(-3, 3)
            ax.set_aspect("equal")
            ax.set_xlabel("x1")
        np.atleast_1d(axes)[0].set_ylabel("x2")
        np.atleast_1d(axes)[0].legend(fontsize=7, loc="lower left")
        fig.suptitle(
            f"Bounded-target Fig. 7: twenty points, splitting sampler, exponential "
            f"grid of {p['steps']} steps ending at t1",
            fontsize=10,
        )
        return fig

    return Outcome(
        settings={
            "schedule": repr(sch),
            "sampling": settings,
            "data": "datasets.gaussian_points(20) (NumPy seed 1)",
        },
        numbers={"rows": rows},
        checks=checks,
        table=rows,
        figures={"fig7": figure},
    )


# --- spiral ------------------------------------------------------------------------------------

SPIRAL_FULL = dict(
    n_train=1000, n=2000, steps=300, t1=1e-4, bandwidth=0.3, tau=0.05, x_eva=[4.0, 0.0], data_seed=0
)
SPIRAL_QUICK = dict(SPIRAL_FULL, n_train=200, n=300, steps=100)


def spiral_points(n: int, seed: int) -> np.ndarray:
    """(U cos U, U sin U) with U ~ Unif[1, 13] (the paper's curve distribution)."""
    return spiral(np.random.default_rng(seed).uniform(1.0, 13.0, n))


def spiral_experiment(p: dict, seed: int) -> Outcome:
    X = spiral_points(p["n_train"], p["data_seed"])
    sch = OU()
    h = float(p["bandwidth"])
    models = {
        "exact": EmpiricalScore(X, sch),
        f"blurred h={h:g}": EmpiricalScore(X, sch, regularizer=Smoothing(h)),
    }
    ts = sch.grid(p["steps"], "exponential", t_end=p["t1"])
    x_eva = np.asarray(p["x_eva"], float)
    t_probe = np.geomspace(sch.T, p["t1"], 40)
    rows, out, settings, norms = [], {}, {}, {}
    for name, m in models.items():
        res = sample(m, p["n"], sampler="splitting", grid=ts, seed=seed)
        rep = memorization(res.samples, X, tau=p["tau"], seed=seed)
        dist = distance_to_spiral(res.samples)
        norms[name] = np.array([np.linalg.norm(m.score(x_eva, float(t))) for t in t_probe])
        out[name] = res.samples
        settings[name] = res.settings
        rows.append(
            dict(
                score=name,
                median_distance_to_spiral=float(np.median(dist)),
                copied_fraction=rep.fraction_tau,
                score_norm_at_t1=float(norms[name][-1]),
                score_norm_max=float(norms[name].max()),
            )
        )
    ex, bl = rows
    d_eva = float(distance_to_spiral(x_eva[None])[0])
    checks = [
        Check(
            "the exact score blows up off the data as t -> 0 (about d / sigma^2)",
            ex["score_norm_at_t1"] > 100 * norms["exact"][0],
            f"|s(x_eva)| {norms['exact'][0]:.3g} at T -> {ex['score_norm_at_t1']:.3g} at t1",
        ),
        Check(
            "the blurred data's score stays bounded (at most about d / h^2)",
            bl["score_norm_max"] < 2 * (d_eva + 1.0) / h**2,
            f"max {bl['score_norm_max']:.3g}, distance of x_eva to the data {d_eva:.3g}",
        ),
        Check(
            f"exact-score samples copy training points (d1 < tau = {p['tau']:g})",
            ex["copied_fraction"] >= 0.9 and ex["median_distance_to_spiral"] < 0.05,
            f"copied {ex['copied_fraction']:.2f}, median distance "
            f"{ex['median_distance_to_spiral']:.3g}",
        ),
        Check(
            "blurred-score samples lie near the spiral (about h) without copying (d1 < tau)",
            bl["copied_fraction"] < 0.5 and bl["median_distance_to_spiral"] < 2 * h,
            f"copied {bl['copied_fraction']:.2f}, median distance "
            f"{bl['median_distance_to_spiral']:.3g}",
        ),
    ]

    def figure(plt):
        fig, axes = plt.subplots(1, 3, figsize=(15, 5.0), layout="constrained")
        u = np.linspace(1, 13, 600)
        curve = spiral(u)
        for ax, (name, s) in zip(axes[:2], out.items(), strict=True):
            ax.plot(curve[:, 0], curve[:, 1], color="gray", lw=0.8, label="spiral")
            mark_points(ax, X, s=6, linewidth=0)
            ax.scatter(
                s[:, 0], s[:, 1], s=4, alpha=0.5, color="#1f77b4", lw=0, label="samples", zorder=6
            )
            ax.plot(*x_eva, "kx", ms=9, mew=2, label="x_eva (right panel)", zorder=7)
            ax.set_aspect("equal")
            ax.set_title(f"{name} score: samples", fontsize=10)
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
            ax.legend(fontsize=7, loc="upper right")
        ax = axes[2]
        for name, v in norms.items():
            ax.loglog(t_probe, v, label=name)
        ax.set_xlabel("t")
        ax.set_ylabel(f"|score| at x_eva = ({x_eva[0]:g}, {x_eva[1]:g})")
        ax.set_title(
            "the exact score is singular at t = 0;\nthe blurred one is bounded", fontsize=10
        )
        ax.legend(fontsize=8)
        fig.suptitle(
            f"Bounded-target: spiral data (N = {len(X)}), OU, splitting sampler, "
            f"exponential grid to t1 = {p['t1']:g}",
            fontsize=10,
        )
        return fig

    return Outcome(
        settings={"schedule": repr(sch), "sampling": settings},
        numbers={
            "rows": rows,
            "probe_times": t_probe,
            "score_norms": norms,
            "distance_x_eva_to_spiral": d_eva,
        },
        checks=checks,
        table=rows,
        figures={"spiral": figure},
    )


# --- the line: parametrizations against the closed form -----------------------------------------

LINE_FULL = dict(n=5000, steps=300, t1=1e-4, x_eva=[1.0, -0.1])
LINE_QUICK = dict(LINE_FULL, n=800, steps=100)


def line_experiment(p: dict, seed: int) -> Outcome:
    sch = OU()
    oracle = LineNormalData(sch)
    x = np.asarray(p["x_eva"], float)
    ts = np.geomspace(sch.T, p["t1"], 60)
    st = oracle.stats(np.broadcast_to(x, (ts.size, 2)), ts)
    al, s2 = sch.alpha(ts), sch.sigma2(ts)
    # Eq. (62): f = (x1 e^{-t/2}, 0); S = -score = (x - alpha f) / sigma^2; eps = sigma S
    f_cf = np.column_stack([x[0] * al, np.zeros_like(ts)])
    S_cf = (x[None] - al[:, None] * f_cf) / s2[:, None]
    eps_cf = np.sqrt(s2)[:, None] * S_cf
    err = dict(
        f=np.abs(st.denoised - f_cf).max(),
        S=np.abs(-st.score - S_cf).max(),
        eps=np.abs(st.eps - eps_cf).max(),
    )
    mags = dict(
        f=np.linalg.norm(st.denoised, axis=1),
        S=np.linalg.norm(st.score, axis=1),
        eps=np.linalg.norm(st.eps, axis=1),
    )
    res = sample(
        oracle,
        p["n"],
        sampler="splitting",
        grid=sch.grid(p["steps"], "exponential", t_end=p["t1"]),
        seed=seed,
    )
    s = res.samples
    rows = [
        dict(
            target=k,
            max_abs_error_vs_eq62=float(err[k]),
            value_at_T=float(mags[k][0]),
            value_at_t1=float(mags[k][-1]),
        )
        for k in ("f", "S", "eps")
    ]
    checks = [
        Check(
            "the oracle's f, S and eps equal the closed forms of Eq. 62",
            max(err[k] / max(1.0, mags[k].max()) for k in err) < 1e-10,
            ", ".join(f"{k}: {v:.2g}" for k, v in err.items()),
        ),
        Check(
            "f (the CEM target) is bounded; S and eps blow up as t -> 0",
            mags["f"].max() <= np.linalg.norm(x)
            and mags["S"][-1] > 100 * mags["S"][0]
            and mags["eps"][-1] > 5 * mags["eps"][0],
            f"|f| <= {mags['f'].max():.3g}; |S| {mags['S'][0]:.3g} -> {mags['S'][-1]:.3g}; "
            f"|eps| {mags['eps'][0]:.3g} -> {mags['eps'][-1]:.3g}",
        ),
        Check(
            "samples of the exact oracle lie on the line with X1 ~ N(0, 1)",
            np.abs(s[:, 1]).max() < 0.1 and abs(s[:, 0].std() - 1) < 5 / np.sqrt(s.shape[0]),
            f"max |x2| {np.abs(s[:, 1]).max():.3g}, std x1 {s[:, 0].std():.3f}",
        ),
    ]

    def figure(plt):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        ax = axes[0]
        for k, style in (("f", "-"), ("S", "--"), ("eps", ":")):
            ax.loglog(ts, mags[k], style, lw=2, label=f"|{k}| (exact oracle)")
        ax.set_xlabel("t")
        ax.set_ylabel(f"norm at X_eva = ({x[0]:g}, {x[1]:g})")
        ax.set_title("targets of CEM (f), SGM (S = -score), DDPM (eps)", fontsize=10)
        ax.legend(fontsize=8)
        ax = axes[1]
        ax.axhline(0, color="#d62728", lw=1, label="data: the line x2 = 0", zorder=1)
        ax.scatter(s[:, 0], s[:, 1], s=3, alpha=0.4, lw=0, label="samples (exact oracle)", zorder=3)
        ax.plot(*x, "kx", ms=8, mew=2, label="X_eva (left panel)", zorder=4)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        ax.set_ylim(-1, 1)
        ax.set_title("splitting sampler with the exact score", fontsize=10)
        ax.legend(fontsize=8)
        fig.suptitle("Bounded-target: line-normal data, OU", fontsize=10)
        fig.tight_layout()
        return fig

    return Outcome(
        settings={"schedule": repr(sch), "sampling": res.settings, "oracle": repr(oracle)},
        numbers={"rows": rows, "times": ts, "norms": mags},
        checks=checks,
        table=rows,
        figures={"line": figure},
    )


EXPERIMENTS = [
    Experiment(
        "bounded-five-points",
        PAPER,
        "five points: absorption frequencies (Fig. 5, Table 1)",
        five_points,
        FIVE_FULL,
        FIVE_QUICK,
    ),
    Experiment(
        "bounded-twenty-points",
        PAPER,
        "twenty points: the t1 study (Fig. 7)",
        twenty_points,
        TWENTY_FULL,
        TWENTY_QUICK,
    ),
    Experiment(
        "bounded-spiral",
        PAPER,
        "spiral: exact against blurred-data scores",
        spiral_experiment,
        SPIRAL_FULL,
        SPIRAL_QUICK,
    ),
    Experiment(
        "bounded-line",
        PAPER,
        "line: f, S, eps against Eq. 62; samples on the line",
        line_experiment,
        LINE_FULL,
        LINE_QUICK,
    ),
]
