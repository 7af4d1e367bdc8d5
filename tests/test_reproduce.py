"""``mixscore reproduce``: every experiment at reduced size, checking the paper's qualitative
claim from the run's own numbers (not from the experiment's own verdicts), plus the outputs and
the command line."""

import json

import numpy as np
import pytest
from mixscore import reproduce as rp
from mixscore.cli import main

_CACHE = {}


def outcome(name):
    if name not in _CACHE:
        _CACHE[name] = rp.run(name, quick=True)
    return _CACHE[name]


def test_registry_lists_every_paper():
    papers = {e.paper for e in rp.EXPERIMENTS.values()}
    assert len(papers) == 5 and len(rp.names()) == 14
    for e in rp.EXPERIMENTS.values():
        assert set(e.quick) == set(e.full), e.name


@pytest.mark.parametrize("name", rp.names())
def test_every_experiment_runs_quick_and_its_claims_hold(name):
    out = outcome(name)
    assert out.checks and out.all_hold, out.summary()
    d = out.to_dict()
    assert d["settings"]["quick"] is True and d["seconds"] > 0 and d["mixscore"]
    json.dumps(d, default=str)  # JSON-ready


def test_pidstrigach_fig1_numbers():
    n = outcome("pidstrigach-fig1").numbers
    assert n["sample_mean"] > n["data_mean"] + 0.1  # the +3 error moves mass right
    assert n["tv_sample_vs_data"] > 0.1
    assert n["fraction_in_data_region"] > n["fraction_of_prior_in_data_region"] + 0.2
    # the histogram is a density
    w = np.diff(n["bin_centres"])[0]
    assert abs(np.sum(n["sample_density"]) * w - 1) < 0.02


def test_pidstrigach_fig2_numbers():
    n = outcome("pidstrigach-fig2").numbers
    assert n["circle_distance_q99"] < 5 * n["sigma_t_end"]
    freq = np.asarray(n["points_copy_frequency"])
    assert abs(freq.sum() - 1) < 1e-12 and n["points_fraction_within_tau"] == 1.0
    from mixscore.datasets import circle

    mean = freq @ circle(9)  # independent of the experiment's own summary
    assert mean[0] > 0.1 and mean[1] < -0.1


def test_pidstrigach_fig3_numbers():
    rows = {r["error"]: r for r in outcome("pidstrigach-fig3").table}
    assert (
        rows[1.0]["copied_mean_pixel"]
        > rows[0.0]["copied_mean_pixel"]
        > rows[-1.0]["copied_mean_pixel"]
    )
    assert min(r["memorized_fraction"] for r in rows.values()) >= 0.9
    d1 = outcome("pidstrigach-fig3").numbers["trace_mean_d1"]
    assert d1[-1] < 0.05 * max(d1)


def test_pidstrigach_fig3_on_user_data(tmp_path):
    """``--set data=X.npy`` (docs/reproduce.md): rows without an image shape, one panel."""
    pytest.importorskip("matplotlib")
    from mixscore import datasets

    np.save(tmp_path / "X.npy", datasets.digits()[:300])
    o = rp.run("pidstrigach-fig3", quick=True, data=str(tmp_path / "X.npy"), n=16)
    assert o.settings["data"] == str(tmp_path / "X.npy")
    files = rp.write(o, tmp_path / "out")
    assert open(files["fig3"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_bounded_five_points_uniform_from_prior_and_exact_start():
    o = outcome("bounded-five-points")
    n = o.settings["n"]
    for start, f in o.numbers["frequencies"].items():
        f = np.asarray(f)
        assert abs(f.sum() - 1) < 1e-12, start  # every sample absorbed
        # binomial: each point within 4.5 sd of 1/5
        assert np.all(np.abs(f - 0.2) < 4.5 * np.sqrt(0.16 / n)), (start, f)


def test_bounded_t1_study_error_falls_with_t1():
    rows = sorted(outcome("bounded-twenty-points").table, key=lambda r: r["t1"])
    d1 = [r["mean_d1"] for r in rows]
    assert d1 == sorted(d1)


def test_bounded_spiral_exact_blows_up_blurred_bounded():
    o = outcome("bounded-spiral")
    ex, bl = o.table
    h = o.settings["bandwidth"]
    norms = o.numbers["score_norms"]
    assert ex["score_norm_at_t1"] > 100 * norms["exact"][0]
    assert bl["score_norm_max"] < 100 * norms[bl["score"]][0] and bl["score_norm_max"] < 10 / h**2
    assert ex["copied_fraction"] >= 0.9 > 0.5 > bl["copied_fraction"]


def test_bounded_line_closed_forms():
    o = outcome("bounded-line")
    ts = np.asarray(o.numbers["times"])
    x = np.array(o.settings["x_eva"])
    s2 = 1 - np.exp(-ts)
    # |S| at x = (1, -0.1): (x - alpha f) / sigma^2 with f = (alpha x1, 0) (Eq. 62)
    al = np.exp(-ts / 2)
    S = np.hypot(x[0] * (1 - al**2) / s2, x[1] / s2)
    np.testing.assert_allclose(o.numbers["norms"]["S"], S, rtol=1e-9)
    np.testing.assert_allclose(o.numbers["norms"]["f"], np.abs(x[0]) * al, rtol=1e-12)


def test_memreg_trajectories_rate_and_symmetric_starts():
    o = outcome("memreg-trajectories")
    assert abs(o.numbers["rate_slope"] - 1) < 0.1 and o.numbers["final_distance_max"] < 1e-2
    for r in o.table:
        assert r["end_at_data_point"] + r["starts_on_hyperplanes"] == r["starts"]
        assert r["hyperplane_starts_still_on_them"] == r["starts_on_hyperplanes"] > 0


@pytest.mark.parametrize("name", ["memreg-tikhonov", "memreg-empirical-bayes"])
def test_memreg_memorized_fraction_falls_as_c_grows(name):
    rows = outcome(name).table
    c = [r["c"] for r in rows]
    f = [r["memorized"] for r in rows]
    assert c == sorted(c)
    assert f[0] >= 0.9 and f[-1] <= 0.1
    assert all(b <= a + 0.05 for a, b in zip(f, f[1:], strict=False))


def test_memreg_conditional_unique_labels_return_their_point():
    u, g = outcome("memreg-conditional").table
    assert u["at_its_own_point"] == 1.0 and g["of_its_label"] == 1.0


def test_variance_fig1_boundaries():
    rows = outcome("variance-fig1").table
    t0 = min(r["t"] for r in rows)
    for r in rows:
        if r["t"] == t0:
            assert r["d1_over_d2_at_argmax"] > 0.9
            assert r["trace_cov_at_points_max"] < 1e-3 * r["max_trace_cov"]


def _brute_spread(x, X, h):
    """Spread about the nearest training point, from direct distances (independent of nearest)."""
    d = np.linalg.norm(x[:, None, :] - X[None, :, :], axis=2)
    order = np.argsort(d, axis=1, kind="stable")
    i1, i2 = order[:, 0], order[:, 1]
    r = np.arange(len(x))
    e = X[i2] - X[i1]
    e /= np.linalg.norm(e, axis=1)[:, None]
    disp = x - X[i1]
    along = np.einsum("ij,ij->i", disp, e)
    across = disp[:, 0] * -e[:, 1] + disp[:, 1] * e[:, 0]  # 2-D: the perpendicular component
    return dict(
        rms_along=np.sqrt(np.mean(along**2)),
        rms_across=np.sqrt(np.mean(across**2)),
        tail_fraction=np.mean(d[r, i1] > 3 * h),
        mean_d1_over_d2=np.mean(d[r, i1] / d[r, i2]),
    )


def test_variance_fig2_naive_estimator_against_kde():
    """Prop. 4.1 from the run's samples: the naive estimator's noise stays in the data's span
    (across the line set it equals the exact-mean PF-ODE) and falls with R; the KDE is the
    isotropic closed form; the table's spreads agree with a direct computation."""
    o = outcome("variance-fig2")
    n, h = o.settings["n"], o.settings["t_end"]
    from mixscore.reproduce.variance import SETS

    S = {k: np.asarray(v) for k, v in o.numbers["samples"].items()}
    rows = {(r["set"], r["sampler"]): r for r in o.table}
    for (name, k), row in rows.items():
        mine = _brute_spread(S[f"{name}/{k}"], SETS[name], h)
        for key, v in mine.items():
            assert abs(row[key] - v) <= 1e-9 * max(1.0, abs(v)), (name, k, key)
    # Prop. 4.1: across the line (x2) the naive samples are the exact-mean PF-ODE's
    np.testing.assert_array_equal(S["line/naive"][:, 1], S["line/euler"][:, 1])
    rms = [r["rms_deviation"] for r in o.numbers["R_sweep"]]
    assert all(b < 0.7 * a for a, b in zip(rms, rms[1:], strict=False)), rms
    # the KDE with h = sigma(t_end): 2-D Gaussian blobs, P(|Z| > 3) = exp(-9/2), RMS per axis h
    tail_bound = np.exp(-4.5) + 4 * np.sqrt(np.exp(-4.5) / n)
    for name in SETS:
        kde = rows[name, "kde"]
        assert kde["tail_fraction"] <= tail_bound
        assert abs(kde["rms_across"] / h - 1) < 0.15 and abs(kde["rms_along"] / h - 1) < 0.15
        # the exact naive estimator adds no mass beyond the KDE's tail at these settings
        assert rows[name, "naive"]["tail_fraction"] <= tail_bound
    assert o.numbers["caption"]["shown_by_naive"] is False


def test_collapse_digits():
    o = outcome("collapse-digits")
    tc = o.numbers["collapse_time"]
    for r in o.table:
        if r["t"] < tc / 2:
            assert r["memorized"] >= 0.9
        if r["t"] > 2 * tc:
            assert r["memorized"] <= 0.5
    h = [r["mean_entropy"] for r in o.numbers["curve"]]  # ascending t; 0 up to rounding
    assert all(b >= a - 1e-12 for a, b in zip(h, h[1:], strict=False)) and h[-1] > 1.0 > h[0]


def test_write_json_and_figures(tmp_path):
    pytest.importorskip("matplotlib")
    o = outcome("memreg-tikhonov")
    files = rp.write(o, tmp_path / "tik")
    data = json.loads((tmp_path / "tik" / "result.json").read_text())
    assert data["experiment"] == "memreg-tikhonov" and data["figures"] == ["fig4.png", "fig5.png"]
    assert data["settings"]["sampling"]["sampler"] == "ddim"  # sampler settings recorded
    assert [r["memorized"] for r in data["table"]] == [r["memorized"] for r in o.table]
    for key in ("fig4", "fig5"):
        assert open(files[key], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileExistsError, match="--force"):
        rp.write(o, tmp_path / "tik")


@pytest.mark.parametrize(
    "name",
    [
        "variance-fig2",
        "bounded-five-points",
        "bounded-twenty-points",
        "bounded-spiral",
        "bounded-line",
        "memreg-conditional",
    ],
)
def test_figures_are_labelled(name, tmp_path):
    """Each figure builds, is written as a PNG, and has axis labels, titles and a legend."""
    pytest.importorskip("matplotlib")
    from mixscore.plotting import _plt

    plt = _plt()
    o = outcome(name)
    for stem, make in o.figures.items():
        fig = make(plt)
        axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert all(ax.get_title() for ax in axes), (name, stem)
        assert any(ax.get_xlabel() for ax in axes) and any(ax.get_ylabel() for ax in axes)
        assert any(ax.get_legend() is not None for ax in axes), (name, stem)
        plt.close(fig)
    files = rp.write(o, tmp_path / name)
    for stem in o.figures:
        assert open(files[stem], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_cli_list_run_and_errors(tmp_path, capsys):
    assert main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in rp.names())
    out = tmp_path / "line"
    assert main(["reproduce", "bounded-line", "--quick", "--out", str(out), "--set", "n=200"]) == 0
    printed = capsys.readouterr().out
    assert "holds" in printed and "result.json" in printed
    assert json.loads((out / "result.json").read_text())["settings"]["n"] == 200
    assert main(["reproduce", "bounded-line", "--quick", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["reproduce", "nope"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err
    assert main(["reproduce", "bounded-line", "--set", "bogus=1"]) == 2
    assert "no parameter(s) ['bogus']" in capsys.readouterr().err


def test_seed_must_be_an_integer():
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        rp.run("bounded-line", quick=True, seed=-1)
