import math

import mixscore as ms
import numpy as np
import pytest

ALL = [
    ms.VP(), ms.VP.memorization_paper(), ms.VP.half_beta(0.05, 9.95), ms.OU(), ms.VE(),
    ms.VE(exact=True), ms.VE.memorization_paper(), ms.Brownian(), ms.EDM(), ms.Cosine(),
    ms.Custom(alpha=lambda t: np.exp(-t), sigma=lambda t: np.sqrt(1 - np.exp(-2 * t))),
    ms.Custom(f=lambda t: -0.5 * (0.1 + 19.9 * t), g=lambda t: np.sqrt(0.1 + 19.9 * t)),
]


@pytest.mark.parametrize("sde", ALL, ids=repr)
def test_defining_identities(sde):
    """alpha = exp(int f) and d sigma^2/dt = 2 f sigma^2 + g^2 (central differences)."""
    t = np.linspace(0.05, 0.95, 19) * sde.T
    h = 1e-6 * sde.T
    dlog_alpha = (np.log(sde.alpha(t + h)) - np.log(sde.alpha(t - h))) / (2 * h)
    np.testing.assert_allclose(dlog_alpha, sde.f(t), rtol=1e-5, atol=1e-7)
    ds2 = (sde.sigma2(t + h) - sde.sigma2(t - h)) / (2 * h)
    np.testing.assert_allclose(ds2, 2 * sde.f(t) * sde.sigma2(t) + sde.g2(t), rtol=1e-5,
                               atol=1e-8)
    assert np.all(sde.sigma(t) > 0)
    assert np.all(np.diff(sde.sigma(t)) > 0)


def test_closed_forms():
    t = np.array([1e-6, 0.3, 1.0])
    vp = ms.VP()
    B = 0.1 * t + 0.5 * 19.9 * t**2
    np.testing.assert_allclose(vp.alpha(t), np.exp(-B / 2), rtol=1e-14)
    np.testing.assert_allclose(vp.sigma2(t), -np.expm1(-B), rtol=1e-14)
    np.testing.assert_allclose(vp.sigma2(t) + vp.alpha(t) ** 2, 1, rtol=1e-14)
    ou = ms.OU()
    np.testing.assert_allclose(ou.alpha(t), np.exp(-t / 2), rtol=1e-14)
    np.testing.assert_allclose(ou.sigma2(t), -np.expm1(-t), rtol=1e-14)
    ve = ms.VE(0.01, 50)
    np.testing.assert_allclose(ve.sigma(t), 0.01 * 5000**t, rtol=1e-13)
    np.testing.assert_allclose(ms.VE(0.01, 50, exact=True).sigma2(t),
                               1e-4 * np.expm1(2 * t * np.log(5000)), rtol=1e-12)
    mem = ms.VE.memorization_paper()
    np.testing.assert_allclose(mem.sigma2(t), np.expm1(t * np.log(100)) / (2 * math.log(10)),
                               rtol=1e-12)
    np.testing.assert_allclose(mem.g(t), 10**t, rtol=1e-14)
    vpm = ms.VP.memorization_paper()
    np.testing.assert_allclose(vpm.alpha(t), np.exp(-(0.001 * t + 1.4995 * t**2) / 2),
                               rtol=1e-14)
    np.testing.assert_allclose(ms.Brownian().sigma2(t), t)
    np.testing.assert_allclose(ms.EDM().sigma(t), t)
    # half-beta convention: dx = -beta x dt + sqrt(2 beta) dW
    hb = ms.VP.half_beta(0.1, 2.0)
    np.testing.assert_allclose(hb.f(t), -(0.1 + 2.0 * t), rtol=1e-14)
    np.testing.assert_allclose(hb.g2(t), 2 * (0.1 + 2.0 * t), rtol=1e-14)
    cos = ms.Cosine()
    s = 0.008
    abar = np.cos((t[:2] + s) / (1 + s) * np.pi / 2) ** 2 / np.cos(s / (1 + s) * np.pi / 2) ** 2
    np.testing.assert_allclose(cos.alpha(t[:2]) ** 2, abar, rtol=1e-12)
    np.testing.assert_allclose(cos.sigma2(t[:2]), 1 - abar, rtol=1e-9, atol=1e-15)


def test_custom_from_f_g_matches_closed_form():
    vp = ms.VP()
    c = ms.Custom(f=vp.f, g=vp.g)
    t = np.geomspace(1e-5, 1, 50)
    np.testing.assert_allclose(c.alpha(t), vp.alpha(t), rtol=1e-10)
    np.testing.assert_allclose(c.sigma2(t), vp.sigma2(t), rtol=1e-6)


def test_custom_rejects_bad_sigma():
    with pytest.raises(ValueError, match="sigma"):
        ms.Custom(alpha=lambda t: np.ones_like(t), sigma=lambda t: -t)
    with pytest.raises(ValueError, match="either"):
        ms.Custom(alpha=lambda t: t)


@pytest.mark.parametrize("kind", ["uniform", "geometric", "log", "exponential", "karras"])
def test_grids(kind):
    sde = ms.VP()
    g = sde.grid(50, kind)
    assert g.shape == (51,)
    assert g[0] == sde.T
    assert np.all(np.diff(g) < 0)
    assert g[-1] == (1e-4 if kind == "exponential" else sde.t_end)
    sde.check_grid(g)


def test_exponential_grid_gamma_corrected():
    """t_i geometric from t_1 to T: each step t_{i+1} - t_i = gamma t_{i+1} with
    gamma = 1 - (t_1/T)^{1/(K-1)} (bounded-target paper Eq. 41, with its printed gamma fixed)."""
    sde, K = ms.OU(), 200
    g = sde.grid(K - 1, "exponential")[::-1]
    gamma = 1 - (1e-4 / sde.T) ** (1 / (K - 1))
    np.testing.assert_allclose(np.diff(g), gamma * g[1:], rtol=1e-9)


def test_karras_grid_edm():
    sde = ms.EDM()
    g = sde.grid(10, "karras")
    i = np.arange(11) / 10
    expect = (80 ** (1 / 7) + i * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(g, expect, rtol=1e-12)


@pytest.mark.parametrize("sde", [ms.VP(), ms.VE(), ms.Cosine(), ms.OU()], ids=repr)
def test_t_of_sigma_inverts(sde):
    t = np.linspace(0.01, 1, 7) * sde.T
    np.testing.assert_allclose(sde.t_of_sigma(sde.sigma(t)), t, rtol=1e-9)


def test_ddpm_times():
    betas = np.linspace(1e-4, 0.02, 1000)
    t = ms.OU.ddpm_times(betas)
    np.testing.assert_allclose(ms.OU(T=t[-1] + 1).alpha(t) ** 2, np.cumprod(1 - betas),
                               rtol=1e-10)


def test_grid_and_time_errors():
    sde = ms.VP()
    with pytest.raises(ValueError, match="steps"):
        sde.grid(0)
    with pytest.raises(ValueError, match="unknown grid kind"):
        sde.grid(10, "cubic")
    with pytest.raises(ValueError, match="strictly decreasing"):
        sde.check_grid([0.5, 0.6])
    with pytest.raises(ValueError, match=r"\(0, T\]"):
        sde.check_grid([2.0, 0.5])
    with pytest.raises(ValueError, match=r"\(0, T\]"):
        sde.check_times(0.0)
