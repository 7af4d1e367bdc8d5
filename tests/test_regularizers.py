"""Regularized, smoothed and perturbed scores against direct float64 transcriptions of their
formulas (SCIENCE.md section 4; memorization paper Eqs. 5.7, 5.11, 5.12)."""

import warnings

import mixscore as ms
import numpy as np
import pytest
from conftest import BACKENDS, rng
from mixscore.regularizers import EmpiricalBayes, Perturbation, Smoothing, Tikhonov
from scipy.special import logsumexp

SIGMA2 = [1e-8, 1e-3, 0.1, 1.0, 1e4]


def dense(x, X, alpha, sigma2, weights=None):
    """Posterior mean, log K = LSE_n(log pi_n - |x - alpha X_n|^2 / (2 sigma^2)), log p."""
    logw = np.zeros(len(X)) if weights is None else np.log(weights)
    d2 = np.sum((x[:, None, :] - alpha * X[None]) ** 2, axis=2)
    lg = logw[None] - d2 / (2 * sigma2)
    log_k = logsumexp(lg, axis=1)
    w = np.exp(lg - log_k[:, None])
    logp = log_k - logsumexp(logw) - 0.5 * X.shape[1] * np.log(2 * np.pi * sigma2)
    return w @ X, log_k, logp



@pytest.fixture(params=BACKENDS + ["cupy"])
def backend(request):
    """Every backend, the array-API fallback (on NumPy arrays) included."""
    return request.param


def data(n=40, d=3, seed=0):
    g = rng(seed)
    X = g.normal(size=(n, d))
    x = np.concatenate([X[:3] + 0.05 * g.normal(size=(3, d)), 2.0 * g.normal(size=(5, d))])
    return X, x


def model(X, backend, reg, weights=None):
    return ms.EmpiricalScore(X, ms.VE(), weights, backend=backend, regularizer=reg)


@pytest.mark.parametrize("s2", SIGMA2)
def test_tikhonov_matches_eq_5_7(backend, s2):
    X, x = data()
    alpha = 0.8
    for c, cval in ((0.05, 0.05), (lambda t: 0.1 * t, 0.1 * 0.3)):
        st = model(X, backend, Tikhonov(c)).stats_at_noise(x, alpha, s2, t=0.3)
        xh, _, _ = dense(x, X, alpha, s2)
        want = (alpha * xh - x) / (s2 + cval)
        np.testing.assert_allclose(st.score, want, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(st.eps, -np.sqrt(s2) * want, rtol=1e-9, atol=1e-12)
        # the x0-prediction of the regularized score (what the samplers integrate)
        np.testing.assert_allclose(st.denoised, (x + s2 * want) / alpha, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("s2", SIGMA2)
@pytest.mark.parametrize("units", ["kernel_sum", "density"])
def test_empirical_bayes_matches_eq_5_11_and_5_12(backend, s2, units):
    X, x = data()
    weights = rng(3).uniform(0.5, 3.0, size=len(X))
    for w in (None, weights):
        xh, log_k, logp = dense(x, X, 1.0, s2, w)
        log_q = log_k if units == "kernel_sum" else logp
        mid = float(np.median(log_q))  # half the queries are cut, half are not
        c = float(np.exp(np.clip(mid, -700, 700)))
        st = model(X, backend, EmpiricalBayes(c, units=units), w).stats_at_noise(x, 1.0, s2)
        # Eq. 5.12: -(1/sigma^2) sum_n (x - X_n) w~_n / max(sum_m w~_m, c) (and Eq. 5.11)
        want = (xh - x) / s2 * np.exp(np.minimum(0.0, log_q - np.log(c)))[:, None]
        np.testing.assert_allclose(st.score, want, rtol=1e-8, atol=1e-12)
        if abs(mid) < 700:
            assert np.any(log_q < np.log(c)) and np.any(log_q > np.log(c))


def test_empirical_bayes_kernel_sum_counts_integer_weights_as_repeated_rows():
    X, x = data(n=6)
    counts = np.array([1, 3, 2, 1, 1, 4])
    rep = np.repeat(X, counts, axis=0)
    for c in (0.5, 2.0):
        a = model(X, "numpy", EmpiricalBayes(c), counts).stats_at_noise(x, 1.0, 0.5).score
        b = model(rep, "numpy", EmpiricalBayes(c)).stats_at_noise(x, 1.0, 0.5).score
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("s2", SIGMA2)
def test_smoothing_is_the_mixture_at_sigma2_plus_alpha2_h2(backend, s2):
    X, x = data()
    alpha, h = 0.7, 0.3
    st = model(X, backend, Smoothing(h)).stats_at_noise(x, alpha, s2)
    v = s2 + alpha**2 * h**2
    xh, _, logp = dense(x, X, alpha, v)
    np.testing.assert_allclose(st.score, (alpha * xh - x) / v, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(st.logpdf, logp, rtol=1e-10)


@pytest.mark.parametrize("s2", SIGMA2)
def test_perturbation_adds_e(backend, s2):
    X, x = data()
    xh, _, _ = dense(x, X, 1.0, s2)
    e = np.array([0.5, -1.0, 2.0])
    for pert, add in ((e, e), (lambda xx, t: np.sin(xx) * t[:, None], np.sin(x) * 0.2)):
        st = model(X, backend, Perturbation(pert)).stats_at_noise(x, 1.0, s2, t=0.2)
        np.testing.assert_allclose(st.score, (xh - x) / s2 + add, rtol=1e-9, atol=1e-9)


def test_composition_has_one_fixed_order(backend):
    X, x = data()
    s2, h, ct, ce, e = 0.2, 0.1, 0.05, 3.0, np.array([1.0, 0.0, -1.0])
    regs = [Perturbation(e), EmpiricalBayes(ce), Tikhonov(ct), Smoothing(h)]
    st = model(X, backend, regs).stats_at_noise(x, 1.0, s2)
    v = s2 + h * h
    xh, log_k, _ = dense(x, X, 1.0, v)
    want = np.minimum(1, np.exp(log_k) / ce)[:, None] * (xh - x) / (v + ct) + e
    np.testing.assert_allclose(st.score, want, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="at most one of each kind"):
        model(X, backend, [Tikhonov(1.0), Tikhonov(2.0)])


def test_no_nan_as_sigma_goes_to_zero_and_tikhonov_stays_bounded(backend):
    X, x = data()
    nn = np.argmin(np.sum((x[:, None] - X[None]) ** 2, axis=2), axis=1)
    for s2 in (1e-30, 1e-100, 1e-300):
        st = model(X, backend, Tikhonov(0.1)).stats_at_noise(x, 1.0, s2)
        np.testing.assert_allclose(st.score, (X[nn] - x) / (s2 + 0.1), rtol=1e-9, atol=1e-12)
        for reg in (
            EmpiricalBayes(1e-3),
            EmpiricalBayes(1e-3, units="density"),
            [Tikhonov(0.1), EmpiricalBayes(0.5), Perturbation(np.ones(3))],
        ):
            st = model(X, backend, reg).stats_at_noise(x, 1.0, s2)
            assert not np.any(np.isnan(st.score)) and not np.any(np.isnan(st.denoised))


def test_bad_input_names_the_argument():
    X, _ = data()
    with pytest.raises(ValueError, match="Tikhonov: c must be a finite number >= 0"):
        Tikhonov(-1.0)
    with pytest.raises(ValueError, match="EmpiricalBayes: c"):
        EmpiricalBayes(-0.1)
    with pytest.raises(ValueError, match="units"):
        EmpiricalBayes(1.0, units="pixels")
    with pytest.raises(ValueError, match="Smoothing: bandwidth"):
        Smoothing(-0.5)
    with pytest.raises(ValueError, match=r"Perturbation: e must have shape \(3,\)"):
        model(X, "numpy", Perturbation(np.ones(4)))
    m = model(X, "numpy", Perturbation(lambda x, t: np.ones((1, 3))))
    with pytest.raises(ValueError, match=r"e\(x, t\) must return shape \(2, 3\)"):
        m.score(X[:2], 0.5)
    m = model(X, "numpy", Tikhonov(lambda t: -t))
    with pytest.raises(ValueError, match=r"Tikhonov: c\(t\) must be finite and >= 0"):
        m.score(X[:2], 0.5)
    with pytest.raises(ValueError, match="needs the time"):
        m.stats_at_noise(X[:2], 1.0, 0.5)
    with pytest.raises(TypeError, match="regularizer must be"):
        model(X, "numpy", "tikhonov")


def test_samplers_integrate_the_regularized_score():
    """The sampler with a regularized model (the fused loop, Tikhonov folded into its
    coefficients, and the Python loop) equals the loop with a callable transcribing Eq. 5.7."""
    X, _ = data(n=20, d=2)
    sch = ms.VE.memorization_paper()
    c = 0.01
    m = ms.EmpiricalScore(X, sch, regularizer=Tikhonov(c))

    def tik(x, t):
        xh, _, _ = dense(x, X, 1.0, float(sch.sigma2(t)))
        return (xh - x) / (float(sch.sigma2(t)) + c)

    kw = dict(n=8, sampler="euler", steps=60, seed=2)
    b = ms.sample(tik, schedule=sch, dim=2, **kw).samples
    for fused in (None, False):
        a = ms.sample(m, fused=fused, **kw).samples
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_tikhonov_memorized_fraction_falls_as_c_grows():
    """Memorization paper Fig. 5: fraction of samples within tau of a training point."""
    X = ms.datasets.gaussian_points()
    sch = ms.VE.memorization_paper()
    fracs = []
    for c in (1e-6, 1e-3, 1e-1):
        m = ms.EmpiricalScore(X, sch, regularizer=Tikhonov(c))
        s = ms.sample(m, n=200, sampler="ddim", steps=200, seed=0, t_end=1e-6).samples
        d1, _ = ms.nearest(s, X, k=1)
        fracs.append(float(np.mean(d1[:, 0] < 1e-2)))
    assert fracs[0] > 0.9 and fracs[0] > fracs[1] > fracs[2] and fracs[2] < 0.1, fracs


def tikhonov_and_early_stopped(X, c, x_start, T=0.5, steps=200):
    """End points of the PF-ODE with Tikhonov(c) from T down to ~0 and of the exact PF-ODE
    from T + c down to sigma^2 = c (Brownian schedule, sigma^2 = t), same starts."""
    tik = ms.EmpiricalScore(X, ms.Brownian(T=T, t_end=1e-9), regularizer=Tikhonov(c))
    early = ms.EmpiricalScore(X, ms.Brownian(T=T + c, t_end=c))
    kw = dict(sampler="heun", steps=steps, start=x_start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rho counts sigma^2, not sigma^2 + c
        return ms.sample(tik, **kw).samples, ms.sample(early, **kw).samples


def test_tikhonov_is_early_stopping_at_sigma2_equal_c():
    """What "Tikhonov at c is early stopping at sigma^2(t) = c" means, and where it is exact.

    For a VE schedule (alpha = 1, g^2 = d sigma^2/dt) write u = sigma^2(t). The Tikhonov
    PF-ODE (Eq. 5.7 in Eq. 5.8) is dx/du = (x - xhat0(x, u)) / (2 (u + c)); the exact PF-ODE
    is dx/dv = (x - xhat0(x, v)) / (2 v). With v = u + c they are the same equation except
    that Tikhonov's posterior mean is taken at noise u = v - c, not v. So integrating
    Tikhonov from u = T to 0 is the exact dynamics from v = T + c stopped at v = c, up to
    that shift of the weights:
    (1) N = 1: xhat0 = X_1 for every u, the two coincide exactly: both end at
        X_1 + sqrt(c / (T + c)) (x_T - X_1) (the one-point PF-ODE solution, checked here
        against both runs);
    (2) N points, once the posterior has collapsed onto one point by v ~ c (sqrt(c) well
        below the spacing) the shift does not matter: per sample, the same training point
        and the same memorized fraction within tau (paired runs: far below Monte Carlo
        error). Not an identity: the ends differ by O(1) of the residual for a few samples
        that are still between points at v ~ c.
    """
    T = 0.5
    x1 = np.array([[0.3, -0.2]])
    x_start = rng(4).normal(size=(40, 2)) * np.sqrt(T)
    c = 1e-2
    a, b = tikhonov_and_early_stopped(x1, c, x_start, T, steps=100)
    want = x1 + np.sqrt(c / (T + c)) * (x_start - x1)
    scale = np.abs(want - x1).max()
    assert np.abs(a - want).max() < 1e-2 * scale  # Heun, 100 geometric steps
    assert np.abs(b - want).max() < 1e-2 * scale

    X = np.random.RandomState(1).randn(20, 2)  # the memorization paper's 20 points
    n, tau = 200, 0.05
    x_start = rng(5).normal(size=(n, 2)) * np.sqrt(T)
    for c in (1e-3, 3e-3):  # sqrt(c) = 0.03, 0.055 against a closest pair 0.076 apart
        a, b = tikhonov_and_early_stopped(X, c, x_start, T)
        (da, ia), (db, ib) = (ms.nearest(s, X, k=1) for s in (a, b))
        assert np.mean(ia[:, 0] == ib[:, 0]) >= 0.95
        fa, fb = np.mean(da[:, 0] < tau), np.mean(db[:, 0] < tau)
        assert 0.2 < fb < 0.8  # a fraction that can move
        # within the Monte Carlo error of one run (2 standard errors); the small systematic
        # part has a sign: Tikhonov's weights at the lower noise memorize slightly more
        assert abs(fa - fb) <= 2 * np.sqrt(fb * (1 - fb) / n)
