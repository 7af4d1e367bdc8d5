"""The direct path (D < 16) visits the training points in spatially compact tiles and leaves out
tiles whose bounding box is beyond the cutoff: results must still be those of the reference,
ties must still go to the lowest original index, and weights must enter the box test."""

import mixscore as ms
import numpy as np
import pytest
from conftest import reference, rng, sigma_schedule

pytestmark = pytest.mark.skipif("cpu" not in ms.available_backends(), reason="no C++ engine")


def clusters(d, n_per, centres, seed):
    r = rng(seed)
    return np.concatenate([c + 0.1 * r.standard_normal((n_per, d)) for c in centres])


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_equidistant_pair_goes_to_lower_index(d):
    """Two points mirrored about the query, the higher index first in tile order (smaller first
    coordinate). For d >= 2 a far cloud spread along the first axis puts them in different
    tiles (the median split falls between them); for d = 1 they share a tile."""
    r = rng(d)
    X = r.standard_normal((1000, d))
    if d == 1:
        X += 50.0
    else:
        X[:, 0] = r.uniform(-40.0, 40.0, 1000)
        X[:, 1] += 50.0
    e = np.zeros(d)
    e[0] = 10.0
    X[5], X[999] = e, -e
    x = np.zeros((1, d))
    for dtype in (np.float32, np.float64):
        model = ms.EmpiricalScore(X.astype(dtype), sigma_schedule())
        for sigma in (1e-6, 0.1, 3.0):
            s = model.stats(x.astype(dtype), sigma)
            assert s.argmax[0] == 5, (dtype, sigma)
            np.testing.assert_allclose(s.max_weight, 0.5, rtol=1e-12)
            np.testing.assert_allclose(s.denoised, 0.0, atol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_far_clusters_match_reference(d, dtype):
    """The query's cluster comes last in tile order; every other tile is skippable."""
    centres = [np.full(d, 10.0 * k) for k in range(6)]
    X = clusters(d, 700, centres, seed=d).astype(dtype)
    r = rng(d + 100)
    x = (X[-700:][r.integers(0, 700, 40)] + 0.05 * r.standard_normal((40, d))).astype(dtype)
    x = np.concatenate([x, np.full((1, d), 25.0, dtype)])  # between two clusters
    model, ref = ms.EmpiricalScore(X, sigma_schedule()), reference(X, sigma_schedule())
    diam2 = float(((X.max(0) - X.min(0)).astype(np.float64) ** 2).sum())
    for sigma in (1e-4, 1e-2, 0.1, 1.0, 5.0, 100.0):
        got, want = model.stats(x, sigma), ref.stats(x, sigma)
        np.testing.assert_array_equal(got.argmax, want.argmax)
        # the denoiser (|x| <= 50) is returned in the model's dtype: half an ulp of rounding
        atol = 50 * (np.finfo(dtype).eps + 1e-12)
        np.testing.assert_allclose(got.denoised, want.denoised, rtol=0, atol=atol)
        np.testing.assert_allclose(got.logpdf, want.logpdf, rtol=1e-12, atol=1e-10)
        # the engine drops entries beyond log N + 20 nats (float32; + 40 for float64): a
        # relative mass below e^-20, each at most diam^2 from the mean
        drop = np.exp(-20.0 if dtype == np.float32 else -40.0) * diam2
        np.testing.assert_allclose(got.tau2, want.tau2, rtol=1e-7, atol=drop + 1e-12)
        np.testing.assert_allclose(got.n_eff, want.n_eff, rtol=1e-9)


@pytest.mark.parametrize("d", [2, 3])
def test_heavy_weight_in_a_far_tile(d):
    """A far point with a huge weight dominates: the box test must count its log-weight."""
    centres = [np.zeros(d), np.full(d, 3.0)]
    X = clusters(d, 600, centres, seed=7)
    w = np.ones(len(X))
    w[900] = 1e30  # in the far cluster
    x = rng(8).standard_normal((20, d)) * 0.05
    model, ref = ms.EmpiricalScore(X, sigma_schedule(), w), reference(X, sigma_schedule(), w)
    for sigma in (0.3, 0.5, 1.0):
        got, want = model.stats(x, sigma), ref.stats(x, sigma)
        np.testing.assert_array_equal(got.argmax, want.argmax)
        np.testing.assert_allclose(got.denoised, want.denoised, rtol=0, atol=1e-10)
        np.testing.assert_allclose(got.logpdf, want.logpdf, rtol=1e-12)
    assert np.all(model.stats(x, 1.0).argmax == 900)


def _each_isa(fn):
    """Runs fn() under every engine variant this CPU supports (FMA contraction differs)."""
    from mixscore.backends.cpu import _core

    best = _core.isa()
    try:
        for isa in ("generic", "avx2", "avx512"):
            if _core.set_isa(isa):
                fn(isa)
    finally:
        _core.set_isa(best)


@pytest.mark.filterwarnings("ignore:train has root-mean-square:RuntimeWarning")
def test_box_bound_holds_with_fused_multiply_add():
    """Duplicated pixel values at sigma^2 = 1e-20 with alpha = 0.99: the box bound must stay
    below lam even where the engine forms x - alpha X with one rounding (FMA builds)."""
    X = np.repeat(np.arange(256.0), 8)[:, None]
    X = X[rng(0).permutation(len(X))]
    x = 0.99 * np.arange(256.0)[:, None] + 1e-3
    ref = reference(X, ms.VP()).stats_at_noise(x, 0.99, 1e-20)
    model = ms.EmpiricalScore(X, ms.VP())

    def check(isa):
        for a in (0.99, 0.999, 0.3):
            xa = a * np.arange(256.0)[:, None] + 1e-3
            got = model.stats_at_noise(xa, a, 1e-20)
            want = reference(X, ms.VP()).stats_at_noise(xa, a, 1e-20)
            np.testing.assert_array_equal(got.argmax, want.argmax, err_msg=f"{isa} alpha={a}")
            np.testing.assert_allclose(got.n_eff, want.n_eff, rtol=1e-12, err_msg=isa)
            np.testing.assert_allclose(got.denoised, want.denoised, rtol=1e-12, err_msg=isa)
        assert np.all(ref.n_eff == 8)

    _each_isa(check)


def test_negative_alpha():
    X = rng(3).standard_normal((5000, 2))
    x = -X[:4] + 1e-3 * rng(4).standard_normal((4, 2))
    got = ms.EmpiricalScore(X, ms.VP()).stats_at_noise(x, -1.0, 1e-4)
    want = reference(X, ms.VP()).stats_at_noise(x, -1.0, 1e-4)
    np.testing.assert_array_equal(got.argmax, [0, 1, 2, 3])
    np.testing.assert_allclose(got.denoised, want.denoised, rtol=0, atol=1e-12)


@pytest.mark.parametrize("d", [2, 5])
def test_huge_sigma_without_weights_is_finite(d):
    """2 sigma^2 overflows to inf: the (absent) log-weight term must not give inf * 0."""
    X = rng(5).standard_normal((700, d))
    s = ms.EmpiricalScore(X, ms.VP()).stats_at_noise(np.zeros((3, d)), 1.0, 1e308)
    for name, v in s.as_dict().items():
        assert np.all(np.isfinite(v)), name
    np.testing.assert_allclose(s.denoised, np.broadcast_to(X.mean(0), (3, d)), atol=1e-12)
