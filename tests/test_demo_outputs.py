"""The demo's outputs (issue 11, items 9 and 10): without matplotlib, --no-plot, the settings on
the console, 2-D data sets drawn as scatters, and a figure whose captions say what they show and
do not overlap."""

import copy
import itertools
import json
import sys

import mixscore as ms
import numpy as np
import pytest
from mixscore import demo
from mixscore.cli import main
from mixscore.memorization import wilson_ci


def _outputs(out):
    return sorted(p.name for p in out.iterdir())


def test_demo_without_matplotlib_writes_the_report_and_says_how_to_get_the_figure(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--n", "16", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert _outputs(out) == ["report.json", "summary.md"]
    assert "matplotlib is not installed" in printed and "pip install 'mixscore[plot]'" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["n_samples"] == 16
    # the console shows the settings, as recorded in the report
    for key in ("schedule", "sampler", "grid", "start"):
        assert str(report["settings"][key]) in printed


def test_no_plot(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        main(["demo", "--quick", "--n", "16", "--out", str(out), "--no-plot", "--no-progress"]) == 0
    )
    assert _outputs(out) == ["report.json", "summary.md"]
    assert "figure skipped (--no-plot)" in capsys.readouterr().out


@pytest.fixture(scope="module", params=["digits", "spiral"])
def run(request):
    pytest.importorskip("matplotlib")
    settings = demo.DemoSettings.make(n=24, quick=True, data=request.param)
    report, finals, X, shape = demo.run(settings, progress=False)
    return request.param, report, finals, X, shape, demo.figure(report, finals, X, shape)


def test_figure_at_fractions_0_and_1(run):
    """0/500 and 500/500 memorized (the default demo's ends): error bars of zero length, not
    negative ones from rounding (matplotlib refuses those)."""
    name, report, finals, X, shape, _ = run
    rep = copy.deepcopy(report)
    for r, k in zip(rep["results"], itertools.cycle([0, 500])):
        r["memorized_fraction"] = k / 500
        r["ci95"] = list(wilson_ci(np.arange(500) < k, 0.95))
    plt = pytest.importorskip("matplotlib.pyplot")
    plt.close(demo.figure(rep, finals, X, shape))


def _texts(fig):
    return [t for t in fig.findobj(lambda o: hasattr(o, "get_text")) if t.get_text()]


def test_figure_names_the_data_and_sigma_beside_t_end(run):
    name, report, finals, X, shape, fig = run
    texts = [t.get_text() for t in _texts(fig)]
    assert any(f"Exact empirical score on {name}" in t for t in texts)
    assert not any("digits" in t for t in texts) or name == "digits"
    for te in finals:
        if any(t.startswith(f"t_end = {te:.3g},") for t in texts):
            assert any(
                f"t_end = {te:.3g}, sigma(t_end) = {float(ms.VP().sigma(te)):.3g}" in t
                for t in texts
            )
    rows = [t for t in texts if t.startswith("t_end = ")]
    assert len(rows) == 3
    histograms = [ax for ax in fig.get_axes() if ax.get_xlabel().startswith("d1 / d2")]
    assert len(histograms) == 3  # one d1/d2 histogram per shown t_end


def test_figure_captions_are_the_exact_nearest_distances_or_a_scatter(run):
    name, report, finals, X, shape, fig = run
    te = min(finals)
    samples, _ = finals[te]
    if shape is not None:
        d1 = np.sqrt(((samples[:10, None, :].astype(np.float64) - X[None]) ** 2).sum(-1)).min(1)
        captions = [ax.get_xlabel() for ax in fig.get_axes() if ax.get_xlabel().startswith("d1 =")]
        assert captions[:10] == [f"d1 = {d:.2f}" for d in d1]
    else:  # 2-D data: samples drawn over the training points
        ax = next(a for a in fig.get_axes() if len(a.collections) == 2)
        train_pts, sample_pts = (np.asarray(c.get_offsets()) for c in ax.collections)
        np.testing.assert_array_equal(train_pts, X)
        np.testing.assert_array_equal(sample_pts, samples)


def test_figure_text_does_not_overlap(run):
    *_, fig = run
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    rows = [t for t in _texts(fig) if t.get_text().startswith("t_end = ")]
    others = [t for t in _texts(fig) if t not in rows and t.get_visible()]
    for row in rows:
        box = row.get_window_extent(renderer)
        for t in others:
            other = t.get_window_extent(renderer)
            if other.width > 0 and other.height > 0:
                assert not box.overlaps(other), (row.get_text(), t.get_text())
