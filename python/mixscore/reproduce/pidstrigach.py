"""J. Pidstrigach, "Score-based generative models detect manifolds" (NeurIPS 2022).

``pidstrigach-fig1``  1-D Gaussian mixture, reverse SDE from the wrong prior N(0, 1) with the
                      score plus a constant error 3 (Fig. 1): the sample distribution differs
                      from the data but stays where the data is.
``pidstrigach-fig2``  uniform circle and nine points on it, prior N((1.5, 0), I), score plus
                      (0, -1) (Fig. 2): samples stay on the circle / on the nine points, with a
                      skewed, non-uniform distribution.
``pidstrigach-fig3``  the same constant perturbation (+1 and -1 in every pixel) on image data
                      (Fig. 3, the digits or a user's .npy): samples are still training images,
                      skewed to bright / dark ones; and the distance of the exact reverse SDE to
                      the training set along the path, started in the zero image (Fig. 3a).

The forward process of Figs. 1-2 is Brownian motion (``mixscore.Brownian``, sigma^2 = t, T = 1;
the paper's Fig. 2 says so; its Appendix B, not in our copy, gives Fig. 1's). The Gaussian
mixture's exact score is the empirical score of its means with ``Smoothing(h)`` (each component
N(mu_k, h^2)); the perturbation is ``Perturbation(e)``. Fig. 3 uses the VP schedule of Song et al.
"""

from __future__ import annotations

import numpy as np

from .. import datasets
from ..continuous import CircleData
from ..empirical import EmpiricalScore
from ..geometry import distance_to_circle
from ..memorization import memorization
from ..nearest import nearest
from ..regularizers import Perturbation, Smoothing
from ..sampling import sample
from ..schedules import VP, Brownian
from ._common import Check, Experiment, Outcome, mark_points

PAPER = "Pidstrigach 2022"

# --- Fig. 1 ------------------------------------------------------------------------------------

FIG1_FULL = dict(
    n=20000,
    steps=400,
    t_end=1e-4,
    means=[-2.0, 1.5],
    weights=[0.6, 0.4],
    component_std=0.3,
    error=3.0,
    sampler="ddpm",
)
FIG1_QUICK = dict(FIG1_FULL, n=1000, steps=100)


def _mixture_pdf(x, means, weights, std):
    w = np.asarray(weights, float) / np.sum(weights)
    z = (np.asarray(x)[:, None] - np.asarray(means)[None]) / std
    return (w * np.exp(-0.5 * z * z) / (std * np.sqrt(2 * np.pi))).sum(axis=1)


def fig1(p: dict, seed: int) -> Outcome:
    sch = Brownian(T=1.0)
    means = np.asarray(p["means"], float)[:, None]
    h, e = float(p["component_std"]), float(p["error"])
    exact = EmpiricalScore(means, sch, p["weights"], regularizer=Smoothing(h))
    model = EmpiricalScore(means, sch, p["weights"], regularizer=[Smoothing(h), Perturbation([e])])
    ts = sch.grid(p["steps"], "geometric", t_end=p["t_end"])
    keep = np.unique(np.linspace(0, p["steps"], 60).astype(int))
    res = sample(
        model, p["n"], sampler=p["sampler"], grid=ts, start="prior", seed=seed, save_steps=keep
    )
    x = res.samples[:, 0]
    lo = float(means.min() - 3.0)
    hi = float(means.max() + 3.0)
    bins = np.linspace(lo, hi, 121)
    centres = 0.5 * (bins[1:] + bins[:-1])
    width = bins[1] - bins[0]
    data_pdf = _mixture_pdf(centres, p["means"], p["weights"], h)
    hist = np.histogram(x, bins)[0] / (x.size * width)
    tv = 0.5 * np.sum(np.abs(hist - data_pdf)) * width
    data_mean = float(np.dot(p["weights"], p["means"]) / np.sum(p["weights"]))

    # "where the data is": data density at least 1e-4 of its maximum (within about 4.3 component
    # std of a mean); prior draws for contrast
    def in_region(v):
        dens = _mixture_pdf(v, p["means"], p["weights"], h)
        return dens >= 1e-4 * data_pdf.max()

    near = in_region(x)
    prior_near = in_region(np.random.default_rng(seed).standard_normal(x.size))
    w_right = float(np.mean(x > np.mean(p["means"])))
    heat = np.stack([np.histogram(s[:, 0], bins)[0] / (x.size * width) for s in res.saved])
    t_saved = ts[keep]
    fwd = np.stack([np.exp(exact.logpdf(centres[:, None], float(t))) for t in t_saved])
    numbers = dict(
        sample_mean=float(x.mean()),
        data_mean=data_mean,
        sample_std=float(x.std()),
        tv_sample_vs_data=float(tv),
        fraction_in_data_region=float(near.mean()),
        fraction_of_prior_in_data_region=float(prior_near.mean()),
        fraction_in_right_component=w_right,
        data_weight_right_component=float(p["weights"][-1] / np.sum(p["weights"])),
        bin_centres=centres,
        sample_density=hist,
        data_density=data_pdf,
        saved_times=t_saved,
        reverse_density=heat,
        forward_density=fwd,
    )
    checks = [
        Check(
            "the sample distribution differs from the data distribution",
            tv > 0.1,
            f"total variation {tv:.3f}",
        ),
        Check(
            "the error +3 moves mass to the right (larger x)",
            x.mean() > data_mean + 0.1 and w_right > numbers["data_weight_right_component"],
            f"mean {x.mean():.3f} vs data {data_mean:.3f}; right component "
            f"{w_right:.3f} vs {numbers['data_weight_right_component']:.3f}",
        ),
        Check(
            "the samples stay where the data is (data density >= 1e-4 of its maximum), unlike "
            "the prior",
            near.mean() >= 0.98 and near.mean() > prior_near.mean() + 0.2,
            f"{near.mean():.4f} of the samples, {prior_near.mean():.4f} of prior draws",
        ),
    ]
    table = [
        dict(quantity=k, value=numbers[k])
        for k in (
            "data_mean",
            "sample_mean",
            "tv_sample_vs_data",
            "data_weight_right_component",
            "fraction_in_right_component",
            "fraction_in_data_region",
            "fraction_of_prior_in_data_region",
        )
    ]

    def figure(plt):
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        ext = dict(shading="auto", cmap="magma")
        for ax, img, title in (
            (axes[0], fwd, "forward: p_t of the data (exact)"),
            (axes[1], heat, f"reverse: q_t, score + {e:g}, prior N(0, 1)"),
        ):
            m = ax.pcolormesh(t_saved, centres, img.T, vmax=np.quantile(img, 0.995), **ext)
            ax.set_xscale("log")
            ax.set_xlabel("forward time t (log scale; the reverse SDE runs right to left)")
            ax.set_ylabel("x")
            ax.set_title(title, fontsize=10)
            fig.colorbar(m, ax=ax, label="density")
        ax = axes[2]
        ax.plot(centres, data_pdf, color="#1f77b4", lw=2, label="mu_data (mixture)")
        ax.plot(centres, hist, color="#ff7f0e", lw=1.5, label=f"mu_sample (n = {x.size})")
        g = np.exp(-0.5 * centres**2) / np.sqrt(2 * np.pi)
        ax.plot(centres, g, color="gray", ls=":", label="mu_prior N(0, 1)")
        ax.plot(means[:, 0], np.zeros(len(means)), "o", color="#d62728", label="component means")
        ax.set_xlabel("x")
        ax.set_ylabel("density")
        ax.set_title("data against samples: same region, different weights", fontsize=10)
        ax.legend(fontsize=8)
        fig.suptitle(
            "Pidstrigach Fig. 1: Brownian forward process, constant score error "
            f"{e:g}, wrong prior",
            fontsize=11,
        )
        fig.tight_layout()
        return fig

    return Outcome(
        settings={
            "schedule": repr(sch),
            "sampling": res.settings,
            "model": repr(model.regularizers),
        },
        numbers=numbers,
        checks=checks,
        table=table,
        figures={"fig1": figure},
    )


# --- Fig. 2 ------------------------------------------------------------------------------------

FIG2_FULL = dict(
    n=10000,
    steps=300,
    t_end=1e-4,
    n_points=9,
    prior_mean=[1.5, 0.0],
    error=[0.0, -1.0],
    tau=0.05,
    sampler="ddpm",
)
FIG2_QUICK = dict(FIG2_FULL, n=600, steps=80)


def _rayleigh(x):
    """Mean resultant vector of the angles of the points x (2-D)."""
    th = np.arctan2(x[:, 1], x[:, 0])
    return np.array([np.cos(th).mean(), np.sin(th).mean()])


def fig2(p: dict, seed: int) -> Outcome:
    sch = Brownian(T=1.0)
    e = np.asarray(p["error"], float)
    rng = np.random.default_rng(seed)
    start = rng.standard_normal((p["n"], 2)) + np.asarray(p["prior_mean"], float)
    ts = sch.grid(p["steps"], "geometric", t_end=p["t_end"])
    show = [
        0,
        int(np.argmin(np.abs(ts - 0.3))),
        int(np.argmin(np.abs(ts - 0.05))),
        int(np.argmin(np.abs(ts - 0.005))),
        p["steps"],
    ]
    circle = CircleData(1.0, sch)

    def circle_score(x, t):
        return circle.score(x, t) + e

    res_c = sample(
        circle_score,
        start=start,
        schedule=sch,
        sampler=p["sampler"],
        grid=ts,
        seed=seed,
        save_steps=show,
    )
    X9 = datasets.circle(p["n_points"])
    model9 = EmpiricalScore(X9, sch, regularizer=Perturbation(e))
    res_p = sample(model9, start=start, sampler=p["sampler"], grid=ts, seed=seed, save_steps=show)
    xc, xp = res_c.samples, res_p.samples
    dist = distance_to_circle(xc)
    rv = _rayleigh(xc)
    rep = memorization(xp, X9, tau=p["tau"], seed=seed)
    counts = rep.copies.counts
    freq = counts / max(1, counts.sum())
    copied_mean = freq @ X9
    n = xc.shape[0]
    sig_end = float(sch.sigma(ts[-1]))
    numbers = dict(
        circle_distance_median=float(np.median(dist)),
        circle_distance_q99=float(np.quantile(dist, 0.99)),
        sigma_t_end=sig_end,
        circle_mean_resultant=rv,
        circle_mean_resultant_length=float(np.hypot(*rv)),
        uniform_resultant_length_scale=float(1 / np.sqrt(n)),
        points_fraction_within_tau=rep.fraction_tau,
        points_d1_max=float(rep.d1.max()),
        points_copy_frequency=freq,
        points_copy_chi2_p=rep.copies.p_value,
        points_copied_mean=copied_mean,
        saved_times=ts[show],
    )
    checks = [
        Check(
            "circle: the samples lie on the circle (to within the noise left at t_end)",
            numbers["circle_distance_q99"] < 5 * sig_end,
            f"99% quantile of the distance {numbers['circle_distance_q99']:.3g}, "
            f"sigma(t_end) = {sig_end:.3g}",
        ),
        Check(
            "circle: the distribution on the circle is not uniform, skewed to large x and small y",
            numbers["circle_mean_resultant_length"] > 6 / np.sqrt(n) and rv[0] > 0 and rv[1] < 0,
            f"mean resultant ({rv[0]:.3f}, {rv[1]:.3f}), uniform ~ {1 / np.sqrt(n):.3f}",
        ),
        Check(
            "nine points: every sample ends on a training point (no new samples)",
            rep.fraction_tau == 1.0,
            f"max distance to the nearest point {rep.d1.max():.3g}",
        ),
        Check(
            "nine points: the points are not hit uniformly; large x, small y preferred",
            rep.copies.p_value < 1e-3 and copied_mean[0] > 0 and copied_mean[1] < 0,
            f"chi2 p = {rep.copies.p_value:.2g}, mean copied point ({copied_mean[0]:.3f}, "
            f"{copied_mean[1]:.3f})",
        ),
    ]
    table = [
        dict(point=i, x=float(X9[i, 0]), y=float(X9[i, 1]), frequency=float(freq[i]))
        for i in range(len(X9))
    ]

    def figure(plt):
        fig, axes = plt.subplots(2, len(show), figsize=(3.1 * len(show), 6.4))
        lim = 3.2
        th = np.linspace(0, 2 * np.pi, 200)
        for row, (res, name) in enumerate(((res_c, "uniform circle"), (res_p, "nine points"))):
            for col, k in enumerate(show):
                ax = axes[row, col]
                s = res.saved[col][:3000]
                ax.scatter(
                    s[:, 0], s[:, 1], s=3, alpha=0.25, color="#1f77b4", lw=0, label="samples q_t"
                )
                ax.plot(np.cos(th), np.sin(th), color="gray", lw=0.6, ls="--")
                if row == 1:
                    mark_points(ax, X9, s=14)
                ax.set_aspect("equal")
                ax.set_xlim(-lim, lim)
                ax.set_ylim(-lim, lim)
                ax.set_title(f"{name}, t = {ts[k]:.3g}", fontsize=9)
                ax.set_xlabel("x")
                if col == 0:
                    ax.set_ylabel("y")
        ax = axes[1, -1]
        for i in range(len(X9)):
            ax.annotate(f"{freq[i]:.2f}", 1.35 * X9[i], ha="center", va="center", fontsize=8)
        ax.set_title(f"nine points, t = {ts[-1]:.3g}\n(frequency of each point)", fontsize=9)
        axes[1, 0].legend(loc="lower left", fontsize=7)
        fig.suptitle(
            "Pidstrigach Fig. 2: Brownian forward process, prior N((1.5, 0), I), "
            "score + (0, -1); histograms of q_t (reverse time runs left to right)",
            fontsize=10,
        )
        fig.tight_layout()
        return fig

    return Outcome(
        settings={
            "schedule": repr(sch),
            "sampling_circle": res_c.settings,
            "sampling_points": res_p.settings,
            "start": f"N({p['prior_mean']}, I) (numpy default_rng(seed))",
        },
        numbers=numbers,
        checks=checks,
        table=table,
        figures={"fig2": figure},
    )


# --- Fig. 3 ------------------------------------------------------------------------------------

FIG3_FULL = dict(
    n=500, steps=200, t_end=1e-3, data="digits", error=1.0, sampler="ddpm", trace_points=40
)
FIG3_QUICK = dict(FIG3_FULL, n=48, steps=60, trace_points=10)


def _image_data(name: str):
    if name == "digits":
        return datasets.digits(), (8, 8), "digits"
    X = datasets.get(name)
    return X, None, name


def fig3(p: dict, seed: int) -> Outcome:
    X, shape, desc = _image_data(p["data"])
    sch = VP()
    d = X.shape[1]
    ts = sch.grid(p["steps"], "geometric", t_end=p["t_end"])
    keep = np.unique(np.linspace(0, p["steps"], p["trace_points"]).astype(int))
    zero = np.zeros(d)
    exact = EmpiricalScore(X, sch)
    res0 = sample(
        exact,
        p["n"],
        sampler=p["sampler"],
        grid=ts,
        start=zero,
        seed=seed,
        save_steps=keep,
        end="denoised",
    )
    mean_d1 = np.array([nearest(s, X, k=1).distances[:, 0].mean() for s in res0.saved])
    runs, rows = {}, []
    for sign in (0.0, 1.0, -1.0):
        e = sign * float(p["error"])
        model = (
            exact if sign == 0 else EmpiricalScore(X, sch, regularizer=Perturbation(np.full(d, e)))
        )
        res = (
            res0
            if sign == 0
            else sample(
                model, p["n"], sampler=p["sampler"], grid=ts, start=zero, seed=seed, end="denoised"
            )
        )
        rep = memorization(res.samples, X, seed=seed)
        copied = X[rep.nn_index]
        runs[e] = (res.samples, rep)
        rows.append(
            dict(
                error=e,
                memorized_fraction=rep.fraction_ratio,
                d1_median=float(np.median(rep.d1)),
                copied_mean_pixel=float(copied.mean()),
                sample_mean_pixel=float(res.samples.mean()),
            )
        )
    by = {r["error"]: r for r in rows}
    ep, em = float(p["error"]), -float(p["error"])
    numbers = dict(
        rows=rows, trace_times=ts[keep], trace_mean_d1=mean_d1, train_mean_pixel=float(X.mean())
    )
    checks = [
        Check(
            "the exact reverse SDE from the zero image ends on training images (mean distance "
            "to the training set falls to 0)",
            mean_d1[-1] < 0.05 * mean_d1.max(),
            f"mean d1 {mean_d1.max():.3g} -> {mean_d1[-1]:.3g}",
        ),
        Check(
            "with a constant error the samples are still training images",
            min(r["memorized_fraction"] for r in rows) >= 0.9,
            ", ".join(f"e = {r['error']:+g}: {r['memorized_fraction']:.2f}" for r in rows),
        ),
        Check(
            "+1 in every pixel prefers bright training images, -1 dark ones",
            by[ep]["copied_mean_pixel"]
            > by[0.0]["copied_mean_pixel"]
            > by[em]["copied_mean_pixel"],
            f"mean pixel of the copied images: {by[ep]['copied_mean_pixel']:.3f} > "
            f"{by[0.0]['copied_mean_pixel']:.3f} > {by[em]['copied_mean_pixel']:.3f}",
        ),
    ]

    def figure(plt):
        from ..plotting import plot_nearest_grid

        fig = plt.figure(figsize=(12, 9.5 if shape else 3.6))
        top, *rest = np.atleast_1d(  # (one subfigure comes back bare, not in an array)
            fig.subfigures(3 if shape else 1, 1, height_ratios=[1.2, 1, 1] if shape else None)
        )
        ax = top.subplots()
        ax.loglog(
            ts[keep][::-1],
            mean_d1[::-1],
            marker="o",
            color="#ff7f0e",
            label="exact empirical score",
        )
        ax.set_xlabel("forward time t (the reverse SDE runs right to left)")
        ax.set_ylabel("mean distance of x_t to\nthe nearest training point")
        ax.set_title(
            f"Fig. 3a: paths started in the zero image ({desc}, n = {p['n']})", fontsize=10
        )
        ax.legend(fontsize=8)
        top.subplots_adjust(bottom=0.2)
        for sub, e in zip(rest, (ep, em), strict=False):
            s, rep = runs[e]
            plot_nearest_grid(s, X, rep.nn_index, shape, n=12, fig=sub, value_range=(-1, 1))
            sub.suptitle(
                f"Fig. 3b: score + ({e:+g}, ..., {e:+g}): generated (top) and nearest "
                f"training image (bottom); memorized {rep.fraction_ratio:.2f}",
                fontsize=9,
            )
        return fig

    return Outcome(
        settings={
            "schedule": repr(sch),
            "data": desc,
            "n_train": int(X.shape[0]),
            "dim": int(d),
            "sampling": res0.settings,
            "start": "the zero vector (all paths)",
            "memorization_rule": "d1/d2 < 1/3",
        },
        numbers=numbers,
        checks=checks,
        table=rows,
        figures={"fig3": figure},
    )


EXPERIMENTS = [
    Experiment(
        "pidstrigach-fig1",
        PAPER,
        "1-D Gaussian mixture, constant score error 3, wrong prior",
        fig1,
        FIG1_FULL,
        FIG1_QUICK,
    ),
    Experiment(
        "pidstrigach-fig2",
        PAPER,
        "uniform circle and nine points, prior N((1.5,0),I), error (0,-1)",
        fig2,
        FIG2_FULL,
        FIG2_QUICK,
    ),
    Experiment(
        "pidstrigach-fig3",
        PAPER,
        "constant perturbation +-1 on images (digits or .npy)",
        fig3,
        FIG3_FULL,
        FIG3_QUICK,
    ),
]
