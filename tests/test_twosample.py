"""Two-sample distances (SCIENCE.md section 5) against SciPy and direct transcriptions."""

import mixscore as ms
import numpy as np
import pytest
from mixscore import twosample


def direct_mmd(x, y, h):
    """Gretton et al. 2012, Eq. 3, from dense pairwise differences."""
    def k(a, b):
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * h * h))

    m, n = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy))
            / (n * (n - 1)) - 2 * k(x, y).mean())


def test_energy_distance_is_scipys_squared_in_1d_and_direct_in_nd(monkeypatch):
    stats = pytest.importorskip("scipy.stats")
    g = np.random.default_rng(0)
    u, v = g.normal(size=300), g.normal(0.5, 1.2, size=200)
    got = ms.twosample.energy_distance(u[:, None], v[:, None])
    assert got == pytest.approx(stats.energy_distance(u, v) ** 2, rel=1e-10)
    x, y = g.normal(size=(60, 7)) + 100.0, g.normal(size=(50, 7)) + 100.3  # offset data

    def mean_dist(a, b):
        return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).mean()

    want = 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)
    assert twosample.energy_distance(x, y) == pytest.approx(want, rel=1e-7)
    assert twosample.energy_distance(x, x) == 0.0
    monkeypatch.setattr(twosample, "_BLOCK_ELEMENTS", 7)  # blocks of one row: same sums
    assert twosample.energy_distance(x, y) == pytest.approx(want, rel=1e-7)


def test_mmd_matches_the_direct_formula_and_the_median_heuristic():
    distance = pytest.importorskip("scipy.spatial.distance")
    g = np.random.default_rng(1)
    x, y = g.normal(size=(100, 5)), g.normal(size=(80, 5)) + 0.3
    for h in (0.5, 1.3, 10.0):
        assert twosample.mmd(x, y, h) == pytest.approx(direct_mmd(x, y, h), rel=1e-10)
    h = np.median(distance.pdist(np.concatenate([x, y])))
    assert twosample.median_distance(x, y) == pytest.approx(h, rel=1e-10)
    assert twosample.mmd(x, y) == pytest.approx(direct_mmd(x, y, h), rel=1e-10)
    # same distribution: near 0 (unbiased, either sign); shifted: clearly positive
    same = twosample.mmd(g.normal(size=(400, 5)), g.normal(size=(400, 5)))
    shifted = twosample.mmd(g.normal(size=(400, 5)), g.normal(size=(400, 5)) + 1.0)
    assert abs(same) < 0.01 < shifted


def test_exact_samples_are_closer_to_the_training_set_than_a_shifted_set():
    """Samples of the exact score from the exact start are draws of the noised empirical
    measure: at small t_end closer to the training set than the same set shifted."""
    X = ms.datasets.gaussian_points()
    res = ms.sample(ms.EmpiricalScore(X, ms.VP()), 400, sampler="ddpm", steps=100,
                    start="exact", seed=0)
    near = twosample.energy_distance(res.samples, X)
    assert near < twosample.energy_distance(res.samples + 0.5, X) / 4


def test_bad_input_is_refused_by_name():
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"y must have shape \(M, 3\)"):
        twosample.energy_distance(x, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least 2 points each, got 5 and 1"):
        twosample.mmd(x, np.zeros((1, 3)), 1.0)
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        twosample.energy_distance(np.full((3, 3), np.nan), x)
    with pytest.raises(ValueError, match="bandwidth must be a finite number > 0, got -1.0"):
        twosample.mmd(x, x + 1, -1.0)
    with pytest.raises(ValueError, match="median pairwise distance: identical points"):
        twosample.mmd(x, x)
