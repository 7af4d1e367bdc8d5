"""Plots (matplotlib optional): the figures build, and a missing matplotlib is a clear error."""

import sys

import mixscore as ms
import numpy as np
import pytest
from conftest import rng


@pytest.fixture
def report_and_data():
    g = rng(0)
    X = g.uniform(0, 1, (50, 36))
    S = np.concatenate([X[:5] + 1e-3, g.uniform(0, 1, (10, 36))])
    return ms.memorization(S, X), S, X


def test_figures(report_and_data):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from mixscore import plotting

    rep, S, X = report_and_data
    ax = plotting.plot_ratio_histogram(rep)
    assert ax.get_xlim() == (0.0, 1.0)
    fig = plotting.plot_nearest_grid(S, X, rep.nn_index, n=4)  # 36 = 6 x 6 gray images
    assert len(fig.axes) == 8
    fig2 = plotting.memorization_figure(rep, S, X)
    assert len(fig2.axes) == 1 + 2 * 8
    with pytest.raises(ValueError, match="cannot show rows of 10 values as images"):
        plotting.plot_nearest_grid(S[:, :10], X[:, :10], rep.nn_index)
    with pytest.raises(ValueError, match=r"image_shape \(5, 5\) has 25 values"):
        plotting.plot_nearest_grid(S, X, rep.nn_index, image_shape=(5, 5))
    plt.close("all")


def test_missing_matplotlib_is_a_clear_error(report_and_data, monkeypatch):
    from mixscore import plotting

    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'mixscore\[plot\]'"):
        plotting.plot_ratio_histogram(report_and_data[0])
