"""Closed forms and exact symmetries (SCIENCE.md section 6)."""

import mixscore as ms
import numpy as np
import pytest
from conftest import rng, sigma_schedule


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_points_tanh(backend, dtype):
    """Points +-1 in 1-d: denoiser tanh(alpha x / sigma^2)."""
    sde = ms.VP()
    model = ms.EmpiricalScore(np.array([[-1.0], [1.0]], dtype), sde, backend=backend)
    x = np.linspace(-3, 3, 61)[:, None].astype(dtype).astype(np.float64)  # exact in dtype
    for t in [1e-3, 0.05, 0.3, 1.0]:
        a, s2 = sde.alpha(t), sde.sigma2(t)
        expect = np.tanh(a * x[:, 0] / s2)
        got = model.denoise(x, t)[:, 0]
        np.testing.assert_allclose(got, expect, atol=1e-6 if dtype == np.float32 else 1e-13)
        lp = model.logpdf(x, t)
        dens = 0.5 * (np.exp(-(x[:, 0] - a) ** 2 / (2 * s2)) + np.exp(-(x[:, 0] + a) ** 2 /
                                                                        (2 * s2)))
        with np.errstate(divide="ignore"):
            ref_lp = np.log(dens) - 0.5 * np.log(2 * np.pi * s2)
        ok = np.isfinite(ref_lp)
        np.testing.assert_allclose(lp[ok], ref_lp[ok], rtol=1e-10)


def test_single_point_is_gaussian(backend):
    sde = ms.VE()
    X0 = rng(1).standard_normal((1, 5))
    model = ms.EmpiricalScore(X0, sde, backend=backend)
    x = rng(2).standard_normal((7, 5)) * 3
    t = 0.4
    s2 = sde.sigma2(t)
    st = model.stats(x, t)
    np.testing.assert_array_equal(st.denoised, np.broadcast_to(X0, x.shape))
    np.testing.assert_allclose(st.score, (X0 - x) / s2, rtol=1e-13)
    np.testing.assert_allclose(
        st.logpdf, -((x - X0) ** 2).sum(1) / (2 * s2) - 2.5 * np.log(2 * np.pi * s2),
        rtol=1e-13)
    np.testing.assert_array_equal(st.tau2, 0.0)
    np.testing.assert_array_equal(st.n_eff, 1.0)


@pytest.mark.parametrize("d", [2, 64])
def test_symmetry_line_is_exact(backend, d):
    """Two mirror points +-e_1 and queries on the mirror plane x_1 = 0: the denoiser's first
    coordinate is exactly 0 (symmetric, deterministic reduction)."""
    X = np.zeros((2, d))
    X[0, 0], X[1, 0] = 1.0, -1.0
    X[:, 1:] = rng(3).standard_normal(d - 1)  # shared off-axis coordinates
    model = ms.EmpiricalScore(X, ms.VP(), backend=backend)
    x = rng(4).standard_normal((20, d))
    x[:, 0] = 0.0
    for t in [1e-3, 0.1, 1.0]:
        st = model.stats(x, t)
        assert np.all(st.denoised[:, 0] == 0.0)
        np.testing.assert_allclose(st.max_weight, 0.5, rtol=1e-12)
        np.testing.assert_array_equal(st.argmax, 0)  # tie: lowest index


@pytest.mark.parametrize("d", [1, 3, 20])
def test_score_is_gradient_of_logpdf(backend, d):
    sde = ms.VP()
    X = rng(5).standard_normal((50, d))
    model = ms.EmpiricalScore(X, sde, rng(6).uniform(0.5, 2, 50), backend=backend)
    x = rng(7).standard_normal((6, d))
    for t in [0.05, 0.5]:
        h = 1e-5
        fd = np.empty_like(x)
        for k in range(d):
            e = np.zeros(d)
            e[k] = h
            fd[:, k] = (model.logpdf(x + e, t) - model.logpdf(x - e, t)) / (2 * h)
        np.testing.assert_allclose(model.score(x, t), fd, rtol=1e-6, atol=1e-6)


def test_line_in_plane(backend):
    """Data on the line y = 0 in R^2 (bounded-target paper): the normal part of the score is
    exactly -y / sigma^2 and the denoiser stays on the line."""
    sde = ms.OU()
    s = np.linspace(-1, 1, 101)
    X = np.stack([s, np.zeros_like(s)], axis=1)
    model = ms.EmpiricalScore(X, sde, backend=backend)
    x = rng(8).standard_normal((30, 2))
    for t in [1e-4, 0.01, 1.0, 10.0]:
        st = model.stats(x, t)
        assert np.all(st.denoised[:, 1] == 0.0)
        np.testing.assert_allclose(st.score[:, 1], -x[:, 1] / sde.sigma2(t), rtol=1e-14)
        assert np.all(np.abs(st.denoised[:, 0]) <= 1.0)


def test_posterior_variance_no_cancellation(backend):
    """Far-from-origin data, tiny spread of the posterior: tau2 keeps its relative accuracy."""
    X = np.array([[1e4, 0.0], [1e4 + 1e-3, 0.0]])
    model = ms.EmpiricalScore(X, sigma_schedule(), backend=backend)
    x = np.array([[1e4 + 5e-4, 0.0]])
    st = model.stats(x, 1e-3)
    # equal weights: tau2 = (1e-3 / 2)^2
    np.testing.assert_allclose(st.tau2, 0.25e-6, rtol=1e-9)
