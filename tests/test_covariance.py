"""Posterior covariance, entropy, Gumbel draws and Cov_w noise against closed forms and
direct float64 computations (SCIENCE.md sections 1 and 4)."""

import mixscore as ms
import numpy as np
import pytest
from conftest import rng
from scipy import stats as sps
from scipy.special import logsumexp


def posterior(x, X, alpha, sigma2, weights=None):
    logw = np.zeros(len(X)) if weights is None else np.log(weights)
    lg = logw[None] - np.sum((x[:, None] - alpha * X[None]) ** 2, axis=2) / (2 * sigma2)
    return np.exp(lg - logsumexp(lg, axis=1)[:, None])


def test_two_points_closed_form(backend):
    """Two points +-1 in 1D: C = alpha^2 sech^2(alpha x / sigma^2) / sigma^4."""
    sch = ms.VP()
    m = ms.EmpiricalScore(ms.datasets.two_points()[:, :1], sch, backend=backend)
    x = np.linspace(-1.5, 1.5, 7)[:, None]
    t = 0.3
    a, s2 = float(sch.alpha(t)), float(sch.sigma2(t))
    want = a**2 / np.cosh(a * x[:, 0] / s2) ** 2 / s2**2
    np.testing.assert_allclose(m.stats(x, t).trace_cov, want, rtol=1e-9)
    np.testing.assert_allclose(m.cov(x, t)[:, 0, 0], want, rtol=1e-9)
    np.testing.assert_allclose(m.cov_matvec(x, t, np.full_like(x, 2.0))[:, 0], 2 * want, rtol=1e-9)


def test_hexagon_centre():
    """The centre of a regular hexagon of radius r: C = alpha^2 r^2 / (2 sigma^4) I."""
    r = 1.7
    sch = ms.VP()
    m = ms.EmpiricalScore(ms.datasets.hexagon(r), sch)
    for t in (0.05, 0.5):
        a, s2 = float(sch.alpha(t)), float(sch.sigma2(t))
        np.testing.assert_allclose(
            m.cov(np.zeros(2), t),
            a**2 * r**2 / (2 * s2**2) * np.eye(2),
            rtol=1e-9,
            atol=1e-9 * a**2 * r**2 / s2**2,
        )


def test_cov_is_the_finite_difference_hessian_plus_identity_over_sigma2():
    X = rng(1).normal(size=(30, 3))
    m = ms.EmpiricalScore(X, ms.VE(), backend="numpy")
    x, t = rng(2).normal(size=3), 0.5
    s2 = float(m.schedule.sigma2(t))
    h = 1e-4
    fd = np.empty((3, 3))
    for j in range(3):
        e = np.zeros(3)
        e[j] = h
        fd[:, j] = (m.score(x + e, t) - m.score(x - e, t)) / (2 * h)  # d score = Hessian
    np.testing.assert_allclose(m.cov(x, t), fd + np.eye(3) / s2, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(m.hessian_logpdf(x, t), fd, rtol=1e-6, atol=1e-6)


def test_cov_and_entropy_match_dense_weights(backend):
    X = rng(3).normal(size=(50, 4))
    weights = rng(4).uniform(0.2, 2.0, size=50)
    x, t = rng(5).normal(size=(6, 4)), 0.4
    for w in (None, weights):
        m = ms.EmpiricalScore(X, ms.VE(), w, backend=backend)
        s2 = float(m.schedule.sigma2(t))
        p = posterior(x, X, 1.0, s2, w)
        xh = p @ X
        dev = X[None] - xh[:, None]
        C = np.einsum("mn,mnd,mne->mde", p, dev, dev) / s2**2
        v = rng(6).normal(size=x.shape)
        np.testing.assert_allclose(m.cov(x, t), C, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            m.cov_matvec(x, t, v), np.einsum("mde,me->md", C, v), rtol=1e-9, atol=1e-12
        )
        st = m.stats(x, t, include=("entropy", "trace_cov"))
        np.testing.assert_allclose(st.entropy, -np.sum(p * np.log(p), axis=1), rtol=1e-9)
        np.testing.assert_allclose(st.trace_cov, np.trace(C, axis1=1, axis2=2), rtol=1e-9)
        np.testing.assert_allclose(m.stats(x, t).trace_cov, st.trace_cov, rtol=1e-9)


def test_gumbel_draws_follow_the_posterior():
    X = rng(7).normal(size=(6, 2))
    m = ms.EmpiricalScore(X, ms.VE())
    x, t = np.zeros(2), 1.0
    R = 6000
    draws = m.posterior_draws(x, t, R, seed=3)
    p = posterior(x[None], X, 1.0, float(m.schedule.sigma2(t)))[0]
    counts = np.bincount(draws, minlength=6)
    assert sps.chisquare(counts, R * p).pvalue > 1e-3
    # counter-based: the draws of a query do not depend on the other queries of the call
    many = m.posterior_draws(np.stack([x, x + 1.0]), t, 50, seed=3)
    np.testing.assert_array_equal(many[0], draws[:50])


def test_cov_noise_has_covariance_cov_w():
    X = rng(8).normal(size=(5, 2)) * np.array([1.0, 3.0])
    m = ms.EmpiricalScore(X, ms.VE())
    t = 0.8
    xs = np.zeros((4000, 2))
    noise = m.cov_noise(xs, t, seed=1)  # each row its own stream
    p = posterior(xs[:1], X, 1.0, float(m.schedule.sigma2(t)))[0]
    dev = X - p @ X
    want = (p[:, None] * dev).T @ dev
    emp = noise.T @ noise / len(noise)
    se = np.sqrt((want**2 + np.outer(np.diag(want), np.diag(want))) / len(noise))
    assert np.all(np.abs(emp - want) < 5 * se), (emp, want)


def test_bad_input():
    m = ms.EmpiricalScore(rng(0).normal(size=(5, 2)), ms.VE())
    with pytest.raises(ValueError, match="R .* must be an int >= 1"):
        m.posterior_draws(np.zeros(2), 0.5, 0)
    with pytest.raises(ValueError, match="v must have the shape of x"):
        m.cov_matvec(np.zeros((3, 2)), 0.5, np.zeros(2))
    with pytest.raises(ValueError, match="D <= 1024"):
        ms.EmpiricalScore(np.zeros((2, 1025)), ms.VE()).cov(np.zeros(1025), 0.5)
