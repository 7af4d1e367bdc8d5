"""The generalization-through-variance samplers (``naive``, ``effective``) and the KDE
baseline (``kde``): one-step laws against a direct NumPy transcription of the posterior,
limits that reduce to the exact sampler, reproducibility, conditioning and bad input."""

import mixscore as ms
import numpy as np
import pytest

scipy_stats = pytest.importorskip("scipy.stats")
pytestmark = pytest.mark.filterwarnings("ignore:.*stiffness rho:RuntimeWarning")

# four points in the plane and a query at which the posterior is spread over all of them
X4 = np.array([[0.0, 0.0], [1.0, 0.2], [-0.4, 1.0], [0.6, -0.9]])
POINT = np.array([0.2, 0.1])
T_A, T_B = 0.3, 0.28  # one step of the VP schedule


def posterior(X, x, alpha, sigma2):
    """w, xhat0 and Cov_w(X_0) at x, float64 NumPy (SCIENCE.md section 1)."""
    logits = -((x - alpha * X) ** 2).sum(1) / (2 * sigma2)
    w = np.exp(logits - logits.max())
    w /= w.sum()
    xh = w @ X
    dev = X - xh
    return w, xh, (w[:, None] * dev).T @ dev


def euler_step(sch, t_a, t_b):
    """PF-ODE Euler step x_b = A x_a + B xhat0 (dx/dt = f x - g^2/2 s, s = (alpha xh - x)/s2),
    the step the paper's Eq. 49 takes, and g^2, alpha, sigma^2 at t_a."""
    h = t_a - t_b
    f, g2, al, s2 = (float(v(t_a)) for v in (sch.f, sch.g2, sch.alpha, sch.sigma2))
    return 1.0 - h * f - 0.5 * h * g2 / s2, 0.5 * h * g2 * al / s2, h, g2, al, s2


def one_step(sampler, n, seed=0, **kw):
    model = ms.EmpiricalScore(X4, ms.VP())
    return ms.sample(
        model, n, sampler=sampler, grid=np.array([T_A, T_B]), start=POINT, seed=seed, **kw
    ).samples


def test_posterior_is_spread_at_the_test_point():
    sch = ms.VP()
    w, _, _ = posterior(X4, POINT, float(sch.alpha(T_A)), float(sch.sigma2(T_A)))
    assert w.min() > 0.05  # the one-step tests below are not degenerate


def test_naive_one_draw_picks_training_points_with_the_posterior_weights():
    """R = 1: x_b = A x + B X_j with j ~ w(x, t_a) (Gumbel-max, paper Prop. 4.1)."""
    sch = ms.VP()
    A, B, *_ = euler_step(sch, T_A, T_B)
    w, _, _ = posterior(X4, POINT, float(sch.alpha(T_A)), float(sch.sigma2(T_A)))
    out = one_step("naive", 4000, R=1)
    cand = A * POINT + B * X4  # the four possible end points
    dist = np.linalg.norm(out[:, None, :] - cand[None], axis=2)
    assert dist.min(1).max() < 1e-12
    counts = np.bincount(dist.argmin(1), minlength=4)
    assert scipy_stats.chisquare(counts, w * counts.sum()).pvalue > 1e-3


def test_naive_step_has_mean_of_euler_and_covariance_b2_cov_over_r():
    """The mean of R draws is unbiased with covariance Cov_w / R (paper Eq. 51), so one step
    has mean A x + B xhat0 and covariance B^2 Cov_w / R (= h^2 g^4/4 C / R, SCIENCE.md
    section 9)."""
    sch = ms.VP()
    A, B, *_ = euler_step(sch, T_A, T_B)
    _, xh, cov = posterior(X4, POINT, float(sch.alpha(T_A)), float(sch.sigma2(T_A)))
    R, n = 3, 6000
    out = one_step("naive", n, R=R, seed=3)
    want_cov = B * B * cov / R
    se = np.sqrt(np.diag(want_cov) / n)
    assert np.all(np.abs(out.mean(0) - (A * POINT + B * xh)) < 5 * se)
    err = np.linalg.norm(np.cov(out.T) - want_cov) / np.linalg.norm(want_cov)
    assert err < 0.1


def test_effective_step_adds_kappa_g4_over_4_c_h():
    """Prop. 3.1 with white V: one Euler-Maruyama step adds covariance kappa h g^4/4 C with
    C = (alpha^2/sigma^4) Cov_w(X_0), around the Euler (PF-ODE) mean."""
    sch = ms.VP()
    A, B, h, g2, al, s2 = euler_step(sch, T_A, T_B)
    _, xh, cov = posterior(X4, POINT, al, s2)
    kappa, n = 0.7, 6000
    out = one_step("effective", n, kappa=kappa, seed=5)
    want_cov = kappa * h * g2 * g2 / 4 * (al * al / s2 / s2) * cov
    se = np.sqrt(np.diag(want_cov) / n)
    assert np.all(np.abs(out.mean(0) - (A * POINT + B * xh)) < 5 * se)
    err = np.linalg.norm(np.cov(out.T) - want_cov) / np.linalg.norm(want_cov)
    assert err < 0.1


def test_kappa_callable_is_evaluated_at_the_step_start():
    at_start = one_step("effective", 50, kappa=lambda t: 2.0 * t)
    np.testing.assert_array_equal(at_start, one_step("effective", 50, kappa=2.0 * T_A))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kappa_zero_and_one_point_reduce_to_the_exact_pf_ode(dtype):
    X = np.random.default_rng(0).standard_normal((30, 3)).astype(dtype)
    model = ms.EmpiricalScore(X, ms.VP())
    kw = dict(steps=40, seed=4)
    euler = ms.sample(model, 32, sampler="euler", fused=False, **kw).samples
    np.testing.assert_array_equal(
        ms.sample(model, 32, sampler="effective", kappa=0.0, **kw).samples, euler
    )
    # no_noise_last: the last step of the effective SDE without noise
    one = dict(grid=np.array([0.5, 0.3]), seed=4, start=X[0] + 0.1)
    np.testing.assert_array_equal(
        ms.sample(model, 8, sampler="effective", kappa=3.0, end="no_noise_last", **one).samples,
        ms.sample(model, 8, sampler="euler", fused=False, **one).samples,
    )
    # naive: with N = 1 every draw is the point; with no_noise_last the last step is exact
    single = ms.EmpiricalScore(X[:1], ms.VP())
    np.testing.assert_allclose(
        ms.sample(single, 16, sampler="naive", R=2, **kw).samples,
        ms.sample(single, 16, sampler="euler", fused=False, **kw).samples,
        rtol=1e-6,
    )
    np.testing.assert_array_equal(
        ms.sample(model, 8, sampler="naive", R=5, end="no_noise_last", **one).samples,
        ms.sample(model, 8, sampler="euler", fused=False, **one).samples,
    )


def test_naive_approaches_euler_as_r_grows():
    """R -> infinity: the step's deviation from Euler shrinks like 1/sqrt(R)."""
    sch = ms.VP()
    A, B, *_ = euler_step(sch, T_A, T_B)
    _, xh, _ = posterior(X4, POINT, float(sch.alpha(T_A)), float(sch.sigma2(T_A)))
    exact = A * POINT + B * xh
    spread = [
        np.sqrt(((one_step("naive", 400, R=R, seed=9) - exact) ** 2).sum(1).mean()) for R in (1, 64)
    ]
    assert spread[1] < spread[0] / 4  # sqrt(64) = 8 in expectation


@pytest.mark.parametrize(
    "sampler,kw", [("naive", dict(R=3)), ("effective", dict(kappa=0.5)), ("kde", {})]
)
def test_same_seed_any_batch_split_same_samples(sampler, kw):
    X = np.random.default_rng(1).standard_normal((25, 4))
    model = ms.EmpiricalScore(X, ms.VP())
    run = dict(sampler=sampler, steps=12, seed=7, **kw)
    full = ms.sample(model, 30, **run).samples
    np.testing.assert_array_equal(ms.sample(model, 30, batch_size=7, **run).samples, full)
    np.testing.assert_array_equal(ms.sample(model, 11, **run).samples, full[:11])
    assert not np.array_equal(ms.sample(model, 30, **{**run, "seed": 8}).samples, full)


def test_steps_draw_fresh_posterior_samples():
    """Each step has its own stream: from the same state two steps draw differently."""
    model = ms.EmpiricalScore(X4, ms.VP())
    draw = model.posterior_draws  # the public draws use step 0; the sampler's step k uses k R
    from mixscore.sampling.denoisers import ModelDenoiser

    den = ModelDenoiser(model)
    x = np.repeat(POINT[None], 200, 0)
    ids = np.arange(200)
    means = [den.draws_mean(x, T_A, 1, 0, ids, k) for k in (0, 1)]
    assert not np.array_equal(means[0], means[1])
    np.testing.assert_array_equal(means[0], X4[draw(x, T_A, 1, seed=0)[:, 0]])


def test_unique_labels_return_the_labelled_point():
    X = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [-2.0, 0.0]])
    model = ms.EmpiricalScore(X, ms.VP(), labels=[10, 11, 12, 13])
    y = np.array([10, 11, 12, 13] * 5)
    sch = model.schedule
    for sampler, kw in (("naive", dict(R=2)), ("effective", dict(kappa=1.0))):
        res = ms.sample(model, 20, sampler=sampler, steps=200, t_end=1e-4, y=y, seed=2, **kw)
        # one point per group: x(t_end) = alpha X_y + (sigma(t_end)/sigma(T)) (x_T - alpha_T X_y)
        resid = np.linalg.norm(res.samples - float(sch.alpha(1e-4)) * X[y - 10], axis=1)
        assert resid.max() < 6 * float(sch.sigma(1e-4))  # 6 sigma = 0.02, spacing 2


def test_labelled_naive_draws_stay_in_the_group():
    labels = np.array([0, 1, 0, 1])
    model = ms.EmpiricalScore(X4, ms.VP(), labels=labels)
    sch = model.schedule
    A, B, *_ = euler_step(sch, T_A, T_B)
    out = ms.sample(
        model, 400, sampler="naive", R=1, grid=np.array([T_A, T_B]), start=POINT, y=1, seed=1
    ).samples
    j = np.linalg.norm(out[:, None] - (A * POINT + B * X4)[None], axis=2).argmin(1)
    assert set(np.unique(j)) == {1, 3}


def test_kde_draws_points_by_weight_plus_gaussian_noise():
    X = np.random.default_rng(2).standard_normal((6, 3))
    w = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 1.0])
    model = ms.EmpiricalScore(X, ms.VP(), weights=w)
    n, h = 6000, 0.05
    res = ms.sample(model, n, sampler="kde", bandwidth=h, seed=3)
    counts = np.bincount(res.start_index, minlength=6)
    assert scipy_stats.chisquare(counts, w / w.sum() * n).pvalue > 1e-3
    z = (res.samples - X[res.start_index]) / h
    assert scipy_stats.kstest(z.ravel(), "norm").pvalue > 1e-3
    # default bandwidth: x(t_end) / alpha(t_end) of the exact dynamics, X_n + sigma/alpha Z
    sch, t_end = model.schedule, 0.01
    default = ms.sample(model, 10, sampler="kde", t_end=t_end)
    assert default.settings["bandwidth"] == pytest.approx(
        np.sqrt(sch.sigma2(t_end)) / sch.alpha(t_end), rel=1e-12
    )


def test_kde_with_labels_draws_from_the_group():
    X = np.random.default_rng(3).standard_normal((8, 2))
    model = ms.EmpiricalScore(X, ms.VP(), labels=np.arange(8) % 3)
    y = np.arange(300) % 3
    res = ms.sample(model, 300, sampler="kde", bandwidth=0.01, y=y, seed=1)
    np.testing.assert_array_equal(res.start_index % 3, y)
    assert len(np.unique(res.start_index)) == 8


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(sampler="naive", R=0), r"R \(the number of posterior draws\) must be an int >= 1"),
        (dict(sampler="naive", R=2.5), r"R \(the number of posterior draws\).*got 2.5"),
        (dict(sampler="euler", R=2), "R= applies to sampler='naive' only"),
        (dict(sampler="effective"), "sampler='effective' needs kappa="),
        (dict(sampler="effective", kappa=-0.1), "kappa must be a finite number >= 0, got -0.1"),
        (dict(sampler="effective", kappa="big"), "kappa must be a number >= 0 or a callable"),
        (dict(sampler="effective", kappa=lambda t: -t), r"kappa\(t\) must be finite and >= 0"),
        (dict(sampler="effective", kappa=lambda t: np.ones(2)), r"kappa\(t\) must return"),
        (dict(sampler="naive", kappa=1.0), "kappa= applies to sampler='effective' only"),
        (dict(sampler="kde", bandwidth=-1.0), "bandwidth must be a finite number >= 0"),
        (dict(sampler="ddpm", bandwidth=1.0), "bandwidth= applies to sampler='kde' only"),
        (dict(sampler="effective", kappa=1.0, fused=True), "runs in the Python loop"),
        (dict(sampler="kde", start=np.zeros(2)), "start= does not apply"),
        (dict(sampler="kde", end="denoised"), "end must be 'as_is'"),
    ],
)
def test_bad_arguments(kwargs, match):
    model = ms.EmpiricalScore(X4, ms.VP())
    with pytest.raises((ValueError, TypeError), match=match):
        ms.sample(model, 2, steps=5, **kwargs)


def test_needs_an_unregularized_empirical_score():
    sch = ms.VP()
    with pytest.raises(ValueError, match="sampler='naive' needs an EmpiricalScore"):
        ms.sample(lambda x, t: -x, 2, schedule=sch, dim=2, sampler="naive")
    reg = ms.EmpiricalScore(X4, sch, regularizer=ms.regularizers.Tikhonov(0.1))
    with pytest.raises(ValueError, match="does not apply regularizers yet"):
        ms.sample(reg, 2, sampler="effective", kappa=1.0)
