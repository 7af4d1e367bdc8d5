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
