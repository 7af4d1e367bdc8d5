"""Exact scores of continuous data (Gaussian, line-normal, uniform circle) against finite
differences of their log-densities, quadrature and closed forms."""

import mixscore as ms
import numpy as np
import pytest
from conftest import rng
from mixscore.continuous import _bessel_i01_scaled
from scipy import special


def fd_grad(f, x, h=1e-5):
    g = np.empty_like(x)
    for j in range(x.shape[1]):
        e = np.zeros(x.shape[1])
        e[j] = h
        g[:, j] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def test_bessel_ratio_matches_scipy():
    z = np.concatenate([[0.0], np.logspace(-6, 6, 200), [29.9, 30.0, 30.1]])
    i0, i1 = _bessel_i01_scaled(z)
    np.testing.assert_allclose(i0, special.ive(0, z), rtol=1e-13)
    np.testing.assert_allclose(i1, special.ive(1, z), rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("t", [0.01, 0.1, 0.7])
def test_circle_score_is_the_gradient_of_its_logpdf(t):
    m = ms.CircleData(1.5, ms.VP())
    x = rng(0).normal(size=(6, 2)) * 1.5
    np.testing.assert_allclose(
        m.score(x, t), fd_grad(lambda y: m.logpdf(y, t), x), rtol=1e-5, atol=1e-5
    )


def test_circle_density_by_quadrature():
    sch = ms.VP()
    m = ms.CircleData(2.0, sch)
    x, t = np.array([[0.3, -1.1], [2.5, 0.4]]), 0.2
    a, s2 = float(sch.alpha(t)), float(sch.sigma2(t))
    th = np.linspace(0, 2 * np.pi, 4001)[:-1]
    pts = 2.0 * a * np.stack([np.cos(th), np.sin(th)], 1)
    dens = np.exp(-np.sum((x[:, None] - pts[None]) ** 2, 2) / (2 * s2)) / (2 * np.pi * s2)
    np.testing.assert_allclose(m.logpdf(x, t), np.log(dens.mean(axis=1)), rtol=1e-10)
    # the posterior mean, by the same quadrature
    w = dens / dens.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(m.denoise(x, t), w @ (pts / a), rtol=1e-9)


def test_gaussian_closed_form_and_gradient():
    sch = ms.OU()
    A = rng(1).normal(size=(3, 3))
    cov = A @ A.T
    mean = np.array([1.0, -2.0, 0.5])
    m = ms.GaussianData(mean, cov, sch)
    x, t = rng(2).normal(size=(4, 3)), 0.3
    a, s2 = float(sch.alpha(t)), float(sch.sigma2(t))
    S = a * a * cov + s2 * np.eye(3)
    np.testing.assert_allclose(m.score(x, t), -(x - a * mean) @ np.linalg.inv(S), rtol=1e-10)
    np.testing.assert_allclose(m.score(x, t), fd_grad(lambda y: m.logpdf(y, t), x), rtol=1e-6)


def test_line_normal_is_the_papers_formula():
    """Bounded-target paper, App. A.3 (S = minus the score, OU schedule): -score =
    (X1, X2 / (1 - e^-t))."""
    m = ms.LineNormalData(ms.OU())
    x, t = rng(3).normal(size=(5, 2)), 0.4
    np.testing.assert_allclose(
        -m.score(x, t), np.stack([x[:, 0], x[:, 1] / -np.expm1(-t)], 1), rtol=1e-12
    )


def test_samplers_accept_continuous_data():
    m = ms.CircleData(1.0, ms.VP())
    s = ms.sample(m, n=200, sampler="ddim", steps=200, seed=0).samples
    r = np.linalg.norm(s, axis=1)
    assert np.all(np.abs(r - 1.0) < 0.05)  # on the circle, up to t_end's noise
    ang = np.arctan2(s[:, 1], s[:, 0])
    assert abs(np.mean(np.cos(ang))) < 0.2 and abs(np.mean(np.sin(ang))) < 0.2


def test_bad_input():
    with pytest.raises(ValueError, match="radius"):
        ms.CircleData(-1.0, ms.VP())
    with pytest.raises(ValueError, match="positive semi-definite"):
        ms.GaussianData(np.zeros(2), -np.eye(2), ms.VP())
    with pytest.raises(ValueError, match=r"cov must be a finite \(2, 2\)"):
        ms.GaussianData(np.zeros(2), np.eye(3), ms.VP())
