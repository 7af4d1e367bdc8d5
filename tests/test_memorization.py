"""ms.memorization: agreement with a direct NumPy computation, scales, bootstrap coverage,
copy statistics against SciPy, serialization and errors."""

import json
import math

import mixscore as ms
import numpy as np
import pytest
from conftest import rng
from mixscore.memorization import bootstrap_ci, gammaincc, wilson_ci


def _direct(S, X):
    d = np.sqrt(((S[:, None, :].astype(np.float64) - X[None, :, :]) ** 2).sum(-1))
    order = np.argsort(d, axis=1, kind="stable")
    ds = np.take_along_axis(d, order, 1)
    return ds[:, 0], ds[:, 1], order[:, 0]


def _synthetic(seed=0, n=60, D=5, copies=25, fresh=35, noise=1e-3):
    g = rng(seed)
    X = g.uniform(0, 1, (n, D))
    pick = g.integers(0, n, copies)
    S = np.concatenate([X[pick] + noise * g.standard_normal((copies, D)),
                        g.uniform(0, 1, (fresh, D))])
    S[0] = X[pick[0]]  # an exact copy
    return S, X


def test_matches_direct_numpy(backend):
    stats = pytest.importorskip("scipy.stats")
    S, X = _synthetic()
    rep = ms.memorization(S, X, tau=0.01, backend=backend, seed=1)
    d1, d2, nn = _direct(S, X)
    np.testing.assert_allclose(rep.d1, d1, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(rep.d2, d2, rtol=1e-12)
    np.testing.assert_array_equal(rep.nn_index, nn)
    assert rep.d1[0] == 0.0
    ratio = d1 / d2
    np.testing.assert_allclose(rep.ratio, ratio, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(rep.memorized_ratio, ratio < 1 / 3)
    np.testing.assert_array_equal(rep.memorized_tau, d1 < 0.01)
    assert rep.fraction_ratio == np.mean(ratio < 1 / 3)
    assert rep.fraction_tau == np.mean(d1 < 0.01)
    assert rep.ci_ratio[0] <= rep.fraction_ratio <= rep.ci_ratio[1]
    # copy histogram against uniform
    flags = ratio < 1 / 3
    counts = np.bincount(nn[flags], minlength=X.shape[0])
    c = rep.copies
    np.testing.assert_array_equal(c.counts, counts)
    assert c.n_copies == flags.sum() and c.n_distinct == np.count_nonzero(counts)
    expected = np.full(X.shape[0], flags.sum() / X.shape[0])
    chi2, p = stats.chisquare(counts, expected)
    assert c.chi2 == pytest.approx(chi2, rel=1e-12) and c.dof == X.shape[0] - 1
    assert c.p_value == pytest.approx(p, rel=1e-9)
    q = counts / counts.sum()
    assert c.kl == pytest.approx(stats.entropy(q, expected / expected.sum()), rel=1e-12)
    assert c.tv == pytest.approx(0.5 * np.abs(q - 1 / X.shape[0]).sum(), rel=1e-12)
    assert c.reliable is False


def test_weights_and_exact_sampler_histogram():
    """Samples that are training points drawn with probability pi: the copy histogram against
    pi is consistent (chi2 p-value not small), against uniform it is not."""
    g = rng(2)
    n = 8
    X = g.standard_normal((n, 3))
    pi = np.arange(1, n + 1, dtype=float)
    draws = g.choice(n, size=4000, p=pi / pi.sum())
    S = X[draws]
    rep_w = ms.memorization(S, X, weights=pi, copy_rule="all")
    rep_u = ms.memorization(S, X, copy_rule="all")
    np.testing.assert_array_equal(rep_w.copies.counts, np.bincount(draws, minlength=n))
    assert rep_w.copies.reference == "weights" and rep_w.copies.reliable
    assert rep_w.copies.p_value > 1e-3
    assert rep_u.copies.p_value < 1e-12
    assert rep_w.copies.tv < 0.05 < rep_u.copies.tv
    assert rep_w.fraction_ratio == 1.0  # every sample is a copy: d1 = 0


def test_scales():
    g = rng(3)
    X = g.uniform(0, 1, (40, 12))
    S = g.uniform(0, 1, (15, 12))
    base = ms.memorization(S, X)
    pix = ms.memorization(S, X, scale="pixels255")
    assert pix.scale_factor == 255.0 and pix.data_range == (0.0, 1.0)
    np.testing.assert_allclose(pix.d1, 255 * base.d1, rtol=1e-15)
    np.testing.assert_array_equal(pix.ratio, base.ratio)  # the ratio rule ignores units
    sym = ms.memorization(2 * S - 1, 2 * X - 1, scale="pixels255")
    assert sym.data_range == (-1.0, 1.0) and sym.scale_factor == 127.5
    np.testing.assert_allclose(sym.d1, pix.d1, rtol=1e-12)
    raw = ms.memorization(255 * S, 255 * X, scale="pixels255")
    assert raw.scale_factor == 1.0
    given = ms.memorization(S, X, scale="pixels255", data_range=(0, 2))
    assert given.scale_factor == 127.5
    rms = ms.memorization(S, X, scale="sqrt_dim")
    np.testing.assert_allclose(rms.d1, base.d1 / math.sqrt(12), rtol=1e-15)
    # tau is read in the reported units
    tau = float(np.median(pix.d1))
    rep = ms.memorization(S, X, scale="pixels255", tau=tau)
    np.testing.assert_array_equal(rep.memorized_tau, pix.d1 < tau)
    with pytest.raises(ValueError, match=r"cannot infer the data range.*\[-3, 4\]"):
        ms.memorization(S, np.concatenate([X, [[-3.0] * 11 + [4.0]]]), scale="pixels255")


def test_d2_zero_is_ratio_zero():
    X = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]])
    S = np.array([[0.0, 0.0], [5.0, 5.0], [1.0, 1.0]])
    rep = ms.memorization(S, X)
    assert rep.d1[0] == rep.d2[0] == 0.0
    assert rep.ratio[0] == 0.0 and rep.memorized_ratio[0]
    assert list(rep.nn_index) == [0, 2, 0]
    assert rep.ratio[1] == 0.0 and rep.memorized_ratio[1]  # d1 = 0 < d2
    assert not rep.memorized_ratio[2]


def test_bootstrap_coverage():
    """The percentile bootstrap CI covers the true fraction at about its nominal rate."""
    g = rng(4)
    for p_true, m in [(0.3, 200), (0.1, 400)]:
        hits = 0
        reps = 400
        for _ in range(reps):
            flags = g.random(m) < p_true
            lo, hi = bootstrap_ci(flags, 400, 0.95, g)
            hits += lo <= p_true <= hi
        assert 0.90 <= hits / reps <= 0.985, (p_true, hits / reps)


@pytest.mark.parametrize("interval", ["wilson", "bootstrap"])
def test_end_to_end_coverage(interval):
    """Synthetic draws: each sample is a copy with probability 0.4, else fresh noise."""
    g = rng(5)
    X = g.standard_normal((300, 4))
    hits, reps = 0, 120
    for r in range(reps):
        copy = g.random(100) < 0.4
        S = np.where(copy[:, None], X[g.integers(0, 300, 100)], 3 * g.standard_normal((100, 4)))
        rep = ms.memorization(S, X, n_boot=300, seed=r, interval=interval)
        hits += rep.ci_ratio[0] <= 0.4 <= rep.ci_ratio[1]
    assert 0.88 <= hits / reps <= 0.99


def test_seeded_bootstrap_is_reproducible():
    S, X = _synthetic(6)
    a = ms.memorization(S, X, tau=0.1, seed=7, interval="bootstrap")
    b = ms.memorization(S, X, tau=0.1, seed=7, interval="bootstrap")
    assert a.ci_ratio == b.ci_ratio and a.ci_tau == b.ci_tau


@pytest.mark.parametrize("a", [0.5, 1.0, 2.5, 10.0, 149.5, 2500.0, 24999.5])
def test_gammaincc_matches_scipy(a):
    special = pytest.importorskip("scipy.special")
    for x in [1e-3, 0.3 * a, a - 1, a, a + 1, a + 3 * math.sqrt(a), 2 * a + 40]:
        if x < 0:
            continue
        want = special.gammaincc(a, x)
        assert gammaincc(a, x) == pytest.approx(want, rel=1e-9, abs=1e-300), (a, x)
    assert gammaincc(a, 0.0) == 1.0


def test_serialization_and_summary(tmp_path):
    S, X = _synthetic(7)
    rep = ms.memorization(S, X, tau=0.05, scale="pixels255")
    d = json.loads(rep.to_json())
    assert d["n_samples"] == len(S) and d["scale"] == "pixels255"
    assert d["fraction_ratio"] == rep.fraction_ratio and d["ci_ratio"] == list(rep.ci_ratio)
    assert len(d["per_sample"]["d1"]) == len(S)
    assert d["copies"]["n_distinct"] == rep.copies.n_distinct
    assert sum(d["copies"]["copied_count"]) == rep.copies.n_copies
    assert "per_sample" not in rep.to_dict(per_sample=False)
    out = tmp_path / "rep.json"
    rep.to_json(out)
    assert json.loads(out.read_text())["tau"] == 0.05
    text = rep.summary()
    for needle in ["ratio rule d1/d2 < 0.3333", "absolute rule d1 < 0.05", "95% Wilson score CI",
                   "0..255 pixel units", "distinct training points", "chi2 ="]:
        assert needle in text
    assert str(rep) == text


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"ratio": 0.0}, ValueError, r"ratio threshold must lie in \(0, 1\)"),
    ({"ratio": 1.0}, ValueError, r"ratio threshold must lie in \(0, 1\)"),
    ({"ratio": 1.5}, ValueError, r"ratio threshold must lie in \(0, 1\).*1.5"),
    ({"ratio": float("nan")}, ValueError, r"ratio threshold"),
    ({"tau": 0.0}, ValueError, "tau must be a finite number > 0"),
    ({"tau": float("inf")}, ValueError, "tau must be a finite number > 0"),
    ({"k": 1}, ValueError, r"2 <= k <= N = 10"),
    ({"k": 11}, ValueError, r"2 <= k <= N = 10.*got k = 11"),
    ({"k": 2.0}, TypeError, "k must be an integer"),
    ({"scale": "pixels"}, ValueError, "scale must be one of"),
    ({"copy_rule": "tau"}, ValueError, "copy_rule='tau' needs tau"),
    ({"copy_rule": "nearest"}, ValueError, "copy_rule must be one of"),
    ({"weights": np.ones(3)}, ValueError, r"weights must have shape \(10,\)"),
    ({"n_boot": 0}, ValueError, "n_boot must be an integer >= 1"),
    ({"confidence": 1.0}, ValueError, r"confidence must lie in \(0, 1\)"),
    ({"scale": "pixels255", "data_range": (1, 1)}, ValueError, "hi > lo"),
])
def test_errors(kwargs, exc, match):
    X = rng(8).uniform(0, 1, (10, 3))
    with pytest.raises(exc, match=match):
        ms.memorization(X[:4], X, **kwargs)


def test_input_errors():
    X = np.zeros((10, 3))
    with pytest.raises(ValueError, match=r"samples must have shape \(M, 3\) to match train"):
        ms.memorization(np.zeros((4, 2)), X)
    with pytest.raises(ValueError, match="samples is empty"):
        ms.memorization(np.zeros((0, 3)), X)
    with pytest.raises(ValueError, match="train is empty"):
        ms.memorization(np.zeros((2, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="samples contains NaN or Inf"):
        ms.memorization(np.array([[0.0, np.nan, 0.0]]), X)


# --- intervals that stay honest at the edges (issue 11, item 7) -------------------------------

@pytest.mark.parametrize("k, m", [(500, 500), (0, 500), (1, 1), (0, 1), (37, 120), (3, 10)])
def test_wilson_interval_matches_scipy_and_stays_open_at_the_edges(k, m):
    stats = pytest.importorskip("scipy.stats")
    flags = np.arange(m) < k
    lo, hi = wilson_ci(flags, 0.95)
    want = stats.binomtest(k, m).proportion_ci(0.95, method="wilson")
    assert (lo, hi) == pytest.approx((want.low, want.high), abs=1e-12)
    assert lo <= k / m <= hi and (lo == 0.0) == (k == 0) and (hi == 1.0) == (k == m)
    assert lo < hi  # never a point: 500/500 is not [1, 1], one sample is not an interval of 0
    rep = ms.memorization(np.zeros((m, 2)) + np.where(flags, 0.0, 0.45)[:, None],
                          np.array([[0.0, 0.0], [1.0, 1.0]]), confidence=0.95)
    assert rep.fraction_ratio == k / m
    assert rep.ci_ratio == pytest.approx((want.low, want.high), abs=1e-12)
    assert "Wilson score CI" in rep.summary() and rep.to_dict()["interval"] == "wilson"


# --- samples and training data on different scales (issue 11, item 1) -------------------------

def _pixels():
    X = ms.datasets.digits()[:200]                 # [-1, 1]
    S = X[:40] + 0.01                             # near-copies, in the training units
    return S, X, (S + 1) * 127.5                  # the same samples as 0..255 pixels


def test_samples_on_another_scale_are_refused_with_both_ranges_and_the_option():
    S, X, S255 = _pixels()
    with pytest.raises(ValueError, match=r"samples span \[.*\] but train spans \[-1, 1\].*"
                                         r"samples_range=\(0, 255\).*check_scale=False"):
        ms.memorization(S255, X)
    with pytest.raises(ValueError, match="samples span"):  # the other way round too
        ms.memorization(S / 1000, X)
    # far outside every usual range (diverged samples): no guessed range is offered
    with pytest.raises(ValueError, match=r"far outside the usual image ranges.*"
                                         r"samples_range=\(lo, hi\)"):
        ms.memorization(S * 4e4, X)


def test_a_few_samples_near_the_origin_are_not_a_scale_mismatch():
    """Samples much smaller than the training set are refused unless most are copies of its
    points (a copy of a point near the origin is measured); small samples that copy nothing
    (0..1 against 0..255, a cloud 100x smaller than 2-D data) still are."""
    X = np.array([[0.05, -0.02], [1.0, 0.9], [-0.8, 1.0], [0.9, -1.0]])
    rep = ms.memorization(X[:1], X)
    assert rep.d1[0] == 0.0 and rep.fraction_ratio == 1.0
    S, X, _ = _pixels()
    with pytest.raises(ValueError, match="samples span"):
        ms.memorization((S + 1) / 2, (X + 1) * 127.5)
    g = np.random.default_rng(0)
    with pytest.raises(ValueError, match="samples span"):
        ms.memorization(g.standard_normal((50, 2)), 100 * g.standard_normal((500, 2)))


def test_samples_range_maps_pixels_onto_the_training_range():
    S, X, S255 = _pixels()
    want = ms.memorization(S, X)
    assert want.fraction_ratio == 1.0
    got = ms.memorization(S255, X, samples_range=(0, 255))
    assert got.fraction_ratio == want.fraction_ratio
    np.testing.assert_allclose(got.d1, want.d1, rtol=1e-9, atol=1e-12)
    assert got.inputs["samples_range"] == {"from": [0.0, 255.0], "to": [-1.0, 1.0]}
    # the check can be turned off for data whose scales truly differ
    off = ms.memorization(S255, X, check_scale=False)
    assert off.fraction_ratio == 0.0


# --- one input convention (item 5) and saved reports (item 12) --------------------------------

def test_image_stacks_and_one_point_are_accepted():
    S, X = _synthetic(8, D=6)
    flat = ms.memorization(S, X)
    img = ms.memorization(S.reshape(-1, 2, 3), X.reshape(-1, 2, 3))
    np.testing.assert_array_equal(img.distances, flat.distances)
    np.testing.assert_array_equal(img.indices, flat.indices)
    one = ms.memorization(S[0], X)
    assert one.n_samples == 1 and one.d1[0] == flat.d1[0]
    with pytest.raises(ValueError, match=r"images of shape \(3, 2\).*\(2, 3\)"):
        ms.memorization(S.reshape(-1, 3, 2), X.reshape(-1, 2, 3))


def test_report_round_trips_through_json_with_version_and_inputs(tmp_path):
    S, X = _synthetic(9)
    rep = ms.memorization(S.astype(np.float32), X, k=3, tau=0.05, scale="pixels255")
    path = tmp_path / "r.json"
    rep.to_json(path)
    d = json.loads(path.read_text())
    assert d["mixscore"] == ms.__version__
    assert d["inputs"]["samples"] == {"shape": list(S.shape), "dtype": "float32"}
    assert d["inputs"]["train"] == {"shape": list(X.shape), "dtype": "float64"}
    back = ms.MemorizationReport.from_json(path)
    for name in ("distances", "indices", "ratio", "memorized_ratio", "memorized_tau"):
        np.testing.assert_array_equal(getattr(back, name), getattr(rep, name))
    np.testing.assert_array_equal(back.copies.counts, rep.copies.counts)
    assert back.summary() == rep.summary()
    assert back.to_dict() == rep.to_dict()
    assert ms.MemorizationReport.from_json(rep.to_json()).ci_tau == rep.ci_tau
    with pytest.raises(ValueError, match="no per-sample values"):
        ms.MemorizationReport.from_json(rep.to_json(per_sample=False))
