"""Numeric extremes of issue 17 that the Python layer decides."""

import mixscore as ms
import numpy as np
import pytest
from conftest import reference, rng


@pytest.mark.parametrize("schedule", [ms.EDM(), ms.VE(), ms.Brownian(),
                                      ms.VE.memorization_paper()])
def test_schedules_defined_beyond_T_accept_later_times(backend, schedule):
    """k-diffusion's stochastic EDM sampler (s_churn) evaluates above sigma_max: the mixture is
    defined there, so the score is too."""
    X = rng(0).standard_normal((30, 3))
    model = ms.EmpiricalScore(X, schedule, backend=backend)
    t = schedule.T * (1 + 1e-9) + 0.5
    x = X[:4] * 2.0
    got = model.stats(x, t)
    want = reference(X, schedule).stats_at_noise(x, schedule.alpha(t), schedule.sigma2(t))
    np.testing.assert_allclose(got.denoised, want.denoised, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.logpdf, want.logpdf, rtol=1e-12)


@pytest.mark.parametrize("schedule", [ms.VP(), ms.OU(), ms.Cosine()])
def test_schedules_with_a_horizon_refuse_later_times(schedule):
    model = ms.EmpiricalScore(rng(0).standard_normal((5, 2)), schedule)
    with pytest.raises(ValueError, match=r"t must lie in \(0, T\]"):
        model.denoise(np.zeros(2), schedule.T * 1.001)
    assert schedule.t_max == schedule.T


def test_times_must_be_positive_and_finite_beyond_T():
    model = ms.EmpiricalScore(rng(0).standard_normal((5, 2)), ms.EDM())
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="t must be finite and > 0"):
            model.denoise(np.zeros(2), bad)


def test_tiny_float32_data_nearest_is_exact(backend):
    """float32 products of values near 1e-23 underflow; the search then runs in float64."""
    X = np.array([[0.0], [1e-23], [2e-23]], np.float32)
    nb = ms.nearest(X, X, k=1, backend=backend)
    np.testing.assert_array_equal(nb.indices[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(nb.distances[:, 0], 0.0)
    Y = (rng(0).standard_normal((50, 64)) * 1e-25).astype(np.float32)
    nb = ms.nearest(Y[:10], Y, k=1, backend=backend)
    np.testing.assert_array_equal(nb.indices[:, 0], np.arange(10))
    np.testing.assert_array_equal(nb.distances[:, 0], 0.0)


def test_tiny_data_score(backend):
    """float64 handles a spread of 1e-25 like any other (matches the reference after
    rescaling); float32 refuses it clearly instead of returning a wrong argmax."""
    Y = rng(0).standard_normal((40, 64)) * 1e-25
    sde = ms.Brownian()
    model = ms.EmpiricalScore(Y, sde, backend=backend)
    scaled = ms.EmpiricalScore(Y * 1e25, sde, backend="numpy")
    x = Y[:3] + 1e-27
    got = model.stats_at_noise(x, 1.0, 1e-52)
    want = scaled.stats_at_noise(x * 1e25, 1.0, 1e-2)
    np.testing.assert_array_equal(got.argmax, want.argmax)
    np.testing.assert_allclose(got.denoised * 1e25, want.denoised, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="varies by at most.*dtype=np.float64"):
        ms.EmpiricalScore(Y.astype(np.float32), sde, backend=backend)


@pytest.mark.parametrize("dtype,value", [(np.float32, 5e18), (np.float64, 1e154)])
def test_huge_values_are_refused(backend, dtype, value):
    X = rng(0).standard_normal((10, 64)).astype(dtype)
    with pytest.raises(ValueError, match="train has values up to.*overflow"):
        ms.EmpiricalScore(X * dtype(value), ms.VE(), backend=backend)
    model = ms.EmpiricalScore(X, ms.VE(), backend=backend)
    with pytest.raises(ValueError, match="x has values up to.*overflow"):
        model.denoise(X[:2] * dtype(value), 0.5)
