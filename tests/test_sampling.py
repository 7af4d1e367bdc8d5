"""ms.sample: statistics of the exact dynamics, C++/Python agreement, reproducibility, errors."""

import mixscore as ms
import numpy as np
import pytest
from mixscore.sampling import SAMPLERS
from mixscore.sampling.methods import POSTERIOR_SAMPLERS

scipy_stats = pytest.importorskip("scipy.stats")
# short grids in the error tests are stiff on purpose; the warning has its own test
pytestmark = pytest.mark.filterwarnings("ignore:.*stiffness rho:RuntimeWarning")

# the fused fixed-grid samplers (naive, effective, kde: tests/test_variance_samplers.py)
FIXED_GRID = [s for s in SAMPLERS if s not in ("rk45", "kde", *POSTERIOR_SAMPLERS)]
ODE = ["euler", "heun", "ddim", "rk45"]


def five_points(dtype=np.float64):
    """Five well-separated points in the plane (nearest-neighbour spacing 2)."""
    return np.array([[0, 0], [2, 0], [0, 2], [-2, 0], [0, -2]], dtype=dtype)


def nearest(x, X):
    d = np.sqrt(((x[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    return d.argmin(1), d.min(1)


# --- statistics of the exact dynamics --------------------------------------------------------

@pytest.mark.parametrize("sampler", ["euler_maruyama", "ddpm", "heun", "ddim"])
def test_exact_start_returns_each_training_point_uniformly(sampler):
    X = five_points()
    model = ms.EmpiricalScore(X, ms.VP())
    n = 2000
    res = ms.sample(model, n, sampler=sampler, steps=200, start="exact", seed=11)
    j, d = nearest(res.samples, X)
    counts = np.bincount(j, minlength=len(X))
    assert scipy_stats.chisquare(counts).pvalue > 0.01
    # every end point lies within the residual noise of its training point:
    # x(t_end) ~ alpha X_j + sigma Z with |Z| < 6 in D = 2 (probability 1 - 1.5e-8)
    te = res.times[-1]
    al, sig = float(model.schedule.alpha(te)), float(model.schedule.sigma(te))
    resid = np.linalg.norm(res.samples - al * X[j], axis=1)
    assert resid.max() < 6 * sig
    assert d.max() < 0.1 * 2


def test_exact_start_weights_are_respected():
    X = five_points()
    w = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    model = ms.EmpiricalScore(X, ms.VP(), weights=w)
    res = ms.sample(model, 3000, sampler="ddpm", steps=150, start="exact", seed=2)
    counts = np.bincount(nearest(res.samples, X)[0], minlength=5)
    assert scipy_stats.chisquare(counts, w / w.sum() * counts.sum()).pvalue > 0.01
    # the start indices are the weighted draw itself
    start_counts = np.bincount(res.start_index, minlength=5)
    assert scipy_stats.chisquare(start_counts, w / w.sum() * 3000).pvalue > 0.01


def test_fixed_start_ends_at_j_with_posterior_probability():
    X = np.array([[-1.0], [0.5], [2.0]])
    model = ms.EmpiricalScore(X, ms.VP())
    t0 = 0.4
    y = np.array([0.3])
    w = np.exp(np.asarray(model.stats(y[None], t0).max_weight))  # placeholder shape check
    assert w.shape == (1,)
    # posterior w_j(y, t0) from the float64 reference
    ref = ms.EmpiricalScore(X, ms.VP(), backend="numpy")
    al, s2 = ref.schedule.alpha(t0), ref.schedule.sigma2(t0)
    logits = -((y - al * X[:, 0]) ** 2) / (2 * s2)
    post = np.exp(logits - logits.max())
    post /= post.sum()
    assert post.min() > 0.05  # a non-degenerate test
    grid = model.schedule.grid(300, "geometric", T=t0)
    res = ms.sample(model, 3000, sampler="euler_maruyama", grid=grid, start=y, seed=5)
    counts = np.bincount(nearest(res.samples, X)[0], minlength=3)
    assert scipy_stats.chisquare(counts, post * counts.sum()).pvalue > 0.01


@pytest.mark.parametrize("sampler", ["euler_maruyama", "heun", "ddpm"])
def test_prior_start_memorizes_with_small_t_end(sampler):
    X = np.random.RandomState(1).randn(20, 2)  # the memorization paper's 20 points
    spacing = np.sort(np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1)), axis=1)[:, 1].min()
    model = ms.EmpiricalScore(X, ms.VP())
    # residual noise sigma(t_end) ~ 3e-4 against a closest pair 0.036 apart
    res = ms.sample(model, 500, sampler=sampler, steps=300, t_end=1e-6, seed=3)
    _, d = nearest(res.samples, X)
    assert d.max() < spacing / 10


# --- deterministic properties ------------------------------------------------------------------

@pytest.mark.parametrize("sampler", FIXED_GRID)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_and_python_loops_agree(sampler, dtype):
    X = np.random.default_rng(0).standard_normal((40, 3)).astype(dtype)
    model = ms.EmpiricalScore(X, ms.VP())
    kw = dict(sampler=sampler, steps=60, seed=4, save_steps=[0, 30, 60])
    fused = ms.sample(model, 64, **kw)
    assert fused.settings["fused"]
    loop = ms.sample(model, 64, fused=False, **kw)
    # same denoiser calls, same float64 update, same noise: identical bits
    np.testing.assert_array_equal(fused.samples, loop.samples)
    np.testing.assert_array_equal(fused.saved, loop.saved)
    # a user callable returning the score goes through the score -> denoiser conversion
    user = ms.sample(lambda x, t: model.score(x, t), 64, schedule=model.schedule, dim=3,
                     dtype=dtype, **kw)
    tol = 1e-5 if dtype == np.float32 else 1e-11
    scale = np.abs(fused.samples).max()
    assert np.abs(user.samples - fused.samples).max() <= tol * scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ode_callable_matches_fused_to_issue_tolerance(dtype):
    X = np.random.default_rng(2).standard_normal((30, 4)).astype(dtype)
    model = ms.EmpiricalScore(X, ms.VP())
    x0 = np.random.default_rng(3).standard_normal((50, 4)).astype(dtype)
    for sampler in ("euler", "heun", "ddim"):
        a = ms.sample(model, sampler=sampler, steps=100, start=x0).samples
        b = ms.sample(lambda x, t: model.denoise(x, t), sampler=sampler, steps=100, start=x0,
                      schedule=model.schedule, output="denoised").samples
        rel = np.abs(a - b).max() / np.abs(a).max()
        assert rel <= (1e-6 if dtype == np.float32 else 1e-12)


def test_batch_split_threads_and_subsets_do_not_change_samples():
    X = np.random.default_rng(5).standard_normal((300, 20)).astype(np.float32)
    kw = dict(sampler="euler_maruyama", steps=40, start="exact", seed=9)
    one = ms.sample(ms.EmpiricalScore(X, ms.VP(), num_threads=1), 90, **kw)
    two = ms.sample(ms.EmpiricalScore(X, ms.VP(), num_threads=2), 90, batch_size=7, **kw)
    np.testing.assert_array_equal(one.samples, two.samples)
    py = ms.sample(ms.EmpiricalScore(X, ms.VP()), 90, batch_size=32, fused=False, **kw)
    np.testing.assert_array_equal(one.samples, py.samples)
    fewer = ms.sample(ms.EmpiricalScore(X, ms.VP()), 40, **kw)  # sample i keeps its stream
    np.testing.assert_array_equal(fewer.samples, one.samples[:40])


@pytest.mark.parametrize("sampler", ODE)
def test_start_on_symmetry_line_stays_on_it(sampler):
    X = np.array([[1.0, 0.0], [-1.0, 0.0]])
    model = ms.EmpiricalScore(X, ms.VP())
    start = np.column_stack([np.zeros(9), np.linspace(-2, 2, 9)])
    res = ms.sample(model, sampler=sampler, steps=100, start=start)
    assert np.all(res.samples[:, 0] == 0.0)


@pytest.mark.parametrize("schedule", [ms.VP(), ms.VE(), ms.EDM(), ms.OU()])
def test_ddim_is_exact_for_one_gaussian(schedule):
    X = np.array([[0.7, -1.3, 2.0]])
    model = ms.EmpiricalScore(X, schedule)
    x0 = np.random.default_rng(0).standard_normal((5, 3)) * float(schedule.sigma(schedule.T))
    res = ms.sample(model, sampler="ddim", steps=3, grid="uniform", start=x0, save_steps=[1, 2])
    ts = res.times
    for row, k in zip([*res.saved, res.samples], [1, 2, 3], strict=True):
        al, sg = float(schedule.alpha(ts[k])), float(schedule.sigma(ts[k]))
        al0, sg0 = float(schedule.alpha(ts[0])), float(schedule.sigma(ts[0]))
        exact = al * X + (sg / sg0) * (x0 - al0 * X)  # the PF-ODE solution for N = 1
        np.testing.assert_allclose(row, exact, rtol=1e-12, atol=1e-12 * sg)


def test_ddpm_is_exact_in_law_for_one_gaussian():
    X = np.array([[0.5, -0.5]])
    sch = ms.VP()
    res = ms.sample(ms.EmpiricalScore(X, sch), 20000, sampler="ddpm", steps=4, start="exact",
                    seed=1)
    te = res.times[-1]
    z = (res.samples - float(sch.alpha(te)) * X) / float(sch.sigma(te))
    assert scipy_stats.kstest(z.ravel(), "norm").pvalue > 0.01


def test_rk45_matches_scipy_solve_ivp():
    integrate = pytest.importorskip("scipy.integrate")
    X = np.random.default_rng(4).standard_normal((12, 3))
    model = ms.EmpiricalScore(X, ms.VP(), backend="numpy")
    sch = model.schedule
    y0 = np.random.default_rng(6).standard_normal((3, 3))
    res = ms.sample(model, sampler="rk45", start=y0, t_end=1e-2, rtol=1e-6, atol=1e-6)

    def fun(t, y):
        s = model.score(y[None], t)[0]
        return float(sch.f(t)) * y - 0.5 * float(sch.g2(t)) * s

    for i in range(3):
        sol = integrate.solve_ivp(fun, (sch.T, 1e-2), y0[i], method="RK45", rtol=1e-6,
                                  atol=1e-6)
        np.testing.assert_allclose(res.samples[i], sol.y[:, -1], rtol=1e-9, atol=1e-9)
        assert res.nfev[i] == sol.nfev


def test_options_that_would_be_ignored_are_refused_and_the_rest_recorded():
    """rk45 and kde have no fixed grid of steps: a grid kind, save_steps, callback, fused (and
    for kde a start) would be ignored, so they are refused; R, kappa and labels are recorded
    in settings."""
    X = five_points()
    model = ms.EmpiricalScore(X, ms.VP())
    for sampler, kw, names in [
        ("rk45", {"save_steps": [1]}, "save_steps does"),
        ("rk45", {"callback": print, "fused": True}, "callback and fused do"),
        ("rk45", {"grid": "karras"}, "grid does"),
        ("kde", {"grid": "uniform", "callback": print}, "grid and callback do"),
        ("kde", {"start": "exact"}, "start does"),
    ]:
        with pytest.raises(ValueError, match=f"sampler={sampler!r} has no fixed grid of "
                                             f"steps: {names} not apply"):
            ms.sample(model, 4, sampler=sampler, **kw)
    labelled = ms.EmpiricalScore(X, ms.VP(), labels=[0, 1, 2, 3, 4])
    s = ms.sample(labelled, 4, sampler="naive", R=3, steps=5, y=[0, 1, 2, 3], seed=1).settings
    assert s["R"] == 3 and s["conditional"] is True
    s = ms.sample(labelled, 4, sampler="effective", kappa=0.25, steps=5, y=[0, 1, 2, 3]).settings
    assert s["kappa"] == 0.25 and s["conditional"] is True
    assert ms.sample(model, 2, steps=3).settings["conditional"] is False
    assert ms.sample(model, 2, sampler="rk45", save_steps=[]).settings["sampler"] == "rk45"


def test_counts_are_integers_not_truncated_floats_or_bools():
    model = ms.EmpiricalScore(five_points(), ms.VP())
    for kw, match in [({"batch_size": 2.5}, "batch_size must be an int >= 1, got 2.5"),
                      ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
                      ({"sampler": "naive", "R": 2.0}, r"R \(the number of posterior draws\) "
                                                      r"must be an int >= 1, got 2.0")]:
        with pytest.raises(ValueError, match=match):
            ms.sample(model, 4, steps=3, **kw)
    for dim in (2.5, "2", True):
        with pytest.raises(ValueError, match="dim must be an int >= 1"):
            ms.sample(lambda x, t: -x, 3, schedule=ms.VP(), dim=dim, steps=3)
    with pytest.raises(TypeError, match="k must be an integer, got True"):
        ms.nearest(five_points()[:2], five_points(), k=True)
    assert ms.sample(model, 3, steps=3, save_steps=[], batch_size=np.int64(2)).saved is None


def test_end_rules():
    X = five_points()
    model = ms.EmpiricalScore(X, ms.VP())
    kw = dict(sampler="euler_maruyama", steps=50, seed=1, start="exact")
    as_is = ms.sample(model, 30, **kw)
    den = ms.sample(model, 30, end="denoised", **kw)
    np.testing.assert_array_equal(den.samples, model.denoise(as_is.samples, as_is.times[-1]))
    quiet = ms.sample(model, 30, end="no_noise_last", **kw)
    assert not np.array_equal(quiet.samples, as_is.samples)
    assert quiet.settings["end"] == "no_noise_last"
    # the last step without noise equals the noisy one minus its noise term
    coef_s = np.sqrt(1.0 * (as_is.times[-2] - as_is.times[-1])
                     * float(model.schedule.g2(as_is.times[-2])))
    from mixscore import _core
    z = _core.philox_normals(1, np.arange(30), 49, 2)
    np.testing.assert_allclose(as_is.samples - quiet.samples, coef_s * z, atol=1e-12)


def test_result_records_settings():
    model = ms.EmpiricalScore(five_points(), ms.VP())
    res = ms.sample(model, 4, sampler="heun", steps=10, grid="karras", seed=3)
    d = res.to_dict()
    for key in ("sampler", "steps", "grid", "t_end", "start", "end", "seed", "a2", "fused"):
        assert key in d["settings"]
    assert d["settings"]["grid"] == "karras" and len(d["times"]) == 11
    assert d["mixscore"] == ms.__version__
    assert res.nfev == 20


def test_callback_and_progress():
    model = ms.EmpiricalScore(five_points(), ms.VP())
    seen = []
    ms.sample(model, 3, steps=25, callback=lambda k, t: seen.append((k, t)), callback_every=10,
              progress=False)
    assert [k for k, _ in seen] == [10, 20, 25]
    seen.clear()
    ms.sample(model, 3, steps=25, fused=False, callback=lambda k, t: seen.append(k),
              callback_every=10)
    assert seen == [10, 20, 25]


def test_callback_exception_propagates_from_fused_loop():
    model = ms.EmpiricalScore(five_points(), ms.VP())

    def boom(k, t):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        ms.sample(model, 3, steps=25, callback=boom)


# --- bad input -------------------------------------------------------------------------------

@pytest.fixture
def model():
    return ms.EmpiricalScore(five_points(), ms.VP())


@pytest.mark.parametrize("kwargs,match", [
    (dict(sampler="leapfrog"), "unknown sampler 'leapfrog'"),
    (dict(steps=0), "steps must be >= 1"),
    (dict(grid=[1.0, 0.5, 0.7]), "strictly decreasing"),
    (dict(grid=[2.0, 0.5]), r"grid\[0\] = 2.0 is outside \(0, T\]"),
    (dict(grid=[1.0, -0.1]), r"grid\[1\] = -0.1 is outside \(0, T\]"),
    (dict(grid=[1.0, 0.0, 0.5]), r"grid\[1\] = 0.0 is outside \(0, T\].*grid\[2\], may be 0"),
    (dict(grid=[1.0, 0.0], end="denoised"), "end='denoised' needs a last time > 0"),
    (dict(grid="cubic"), "grid must be one of"),
    (dict(end="clean"), "end must be one of"),
    (dict(start="uniform"), "start must be one of"),
    (dict(start=np.zeros((3, 3))), r"start array must have shape \(n, 2\)"),
    (dict(start=np.zeros(3)), r"start point must have shape \(2,\)"),
    (dict(a2=-1.0), "a2 must be a finite number >= 0"),
    (dict(sampler="heun", a2=0.5), "a2 applies to sampler='euler_maruyama' only"),
    (dict(seed=-1), "seed must be in"),
    (dict(save_steps=[0, 600]), "save_steps must lie in"),
    (dict(batch_size=0), "batch_size must be an int >= 1"),
    (dict(sampler="splitting", steps=5), None),  # VP is allowed
])
def test_bad_arguments(model, kwargs, match):
    if match is None:
        ms.sample(model, 2, **kwargs)
        return
    with pytest.raises((ValueError, TypeError), match=match):
        ms.sample(model, 2, **kwargs)


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_bad_n(model, n):
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        ms.sample(model, n)


def test_splitting_needs_a_vp_schedule():
    with pytest.raises(ValueError, match="VP/OU schedules"):
        ms.sample(ms.EmpiricalScore(five_points(), ms.VE()), 2, sampler="splitting")


def test_callable_errors():
    sch = ms.VP()
    with pytest.raises(TypeError, match="needs schedule="):
        ms.sample(lambda x, t: -x, 3, dim=2)
    with pytest.raises(ValueError, match="needs dim="):
        ms.sample(lambda x, t: -x, 3, schedule=sch)
    with pytest.raises(ValueError, match=r"returned shape \(3, 1\)"):
        ms.sample(lambda x, t: x[:, :1], 3, schedule=sch, dim=2, steps=5)
    with pytest.raises(ValueError, match="returned NaN or Inf at step 0"):
        ms.sample(lambda x, t: x * np.nan, 3, schedule=sch, dim=2, steps=5)
    with pytest.raises(ValueError, match="start='exact' needs an EmpiricalScore"):
        ms.sample(lambda x, t: -x, 3, schedule=sch, dim=2, start="exact")


def test_unstable_step_stops_with_step_and_time():
    sch = ms.VP()

    def huge(x, t):  # finite, but the step overflows the float32 state
        return np.full(x.shape, 1e300)

    with pytest.raises(FloatingPointError, match=r"NaN/Inf at step 0 \(t = 1 -> "):
        ms.sample(huge, 3, schedule=sch, dim=2, steps=500, sampler="euler", dtype=np.float32)


def test_diverging_sampler_stops_at_the_same_step_in_every_loop():
    """States that leave the engine's range (|x| > 1e150 / sqrt(D) in float64, where squared
    distances overflow) stop every loop at the step that produced them, as NaN/Inf would: the
    same "unstable step" error, not a data-scale error from the next denoiser call."""
    messages = []
    for how in ({"fused": False}, {"backend": "numpy"}, {}):
        model = ms.EmpiricalScore(np.array([[-1.0], [1.0]]), ms.Brownian(),
                                  backend=how.get("backend", "auto"))
        with pytest.raises(FloatingPointError, match=r"sampler 'euler_maruyama' produced NaN/Inf "
                                                     r"or \|x\| > 1e\+150 .* at step 238 .*"
                                                     r"unstable") as e:
            ms.sample(model, 3, a2=20.0, grid=0.5 ** np.arange(300), fused=how.get("fused"))
        messages.append(str(e.value))
        with pytest.raises(ValueError, match=r"start has values up to 1e\+200"):  # the start
            ms.sample(model, 3, start=np.full((3, 1), 1e200), fused=how.get("fused"))
    assert len(set(messages)) == 1


def test_stiff_grid_warns_and_names_the_step(model):
    grid = np.array([1.0, 0.999, 0.5, 1e-4])
    with pytest.warns(RuntimeWarning, match=r"rho > 2 or < 0 \(steps 1, 2; first step 1"):
        ms.sample(model, 2, sampler="euler_maruyama", grid=grid)
    with warnings_as_errors():
        ms.sample(model, 2, sampler="ddpm", grid=grid)  # exponential integrators are stable


def warnings_as_errors():
    import warnings

    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("error")

    class _Exit:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            ctx.__exit__(*exc)

    return _Exit()


# --- issue 11: stiffness (item 8), grids ending at 0 (item 2), seeds (item 4) ----------------

@pytest.mark.parametrize("sampler", ["euler_maruyama", "euler", "heun", "splitting"])
def test_stiffness_is_the_steps_factor_and_the_warning_fires_exactly_above_2(sampler):
    """rho = 1 - A where one step maps x to A x when the denoiser is frozen at 0: measured
    directly by a one-step run with a zero denoiser and no noise, on steps of growing size."""
    sch = ms.VP()
    zero = lambda x, t: np.zeros_like(x)  # noqa: E731
    for t_b in (0.9, 0.7, 0.5, 0.2, 0.01):
        grid = np.array([1.0, t_b])
        with warnings_recorded() as w:
            res = ms.sample(zero, start=np.ones((1, 3)), schedule=sch, output="denoised",
                            sampler=sampler, grid=grid, end="no_noise_last")
        factor = res.samples[0, 0]  # (Heun's: the whole step's, predictor and corrector)
        rho = res.settings["stiffness_max"]
        assert rho == pytest.approx(1 - factor, rel=1e-12)
        assert res.settings["error_growth_max"] == pytest.approx(abs(factor), rel=1e-12)
        assert bool(w) == (abs(factor) > 1), (t_b, rho, w)


def test_default_grids_do_not_warn_where_nothing_diverges():
    model = ms.EmpiricalScore(ms.datasets.digits()[:300], ms.VP())
    for sampler in ("euler_maruyama", "euler", "heun"):
        with warnings_as_errors():
            res = ms.sample(model, 8, sampler=sampler, steps=50, seed=0)
        assert res.settings["stiffness_max"] < 2 and res.settings["error_growth_max"] <= 1
        assert np.abs(res.samples).max() < 1.5


def warnings_recorded():
    import warnings

    ctx = warnings.catch_warnings(record=True)

    class _Rec:
        def __enter__(self):
            w = ctx.__enter__()
            warnings.simplefilter("always")
            return w

        def __exit__(self, *exc):
            ctx.__exit__(*exc)

    return _Rec()


def _karras_to_zero(n=12, smin=0.002, smax=80.0, rho=7.0):
    """k-diffusion's get_sigmas_karras: n Karras sigmas and a final 0 (written out here)."""
    ramp = np.linspace(0, 1, n)
    sig = (smax ** (1 / rho) + ramp * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return np.append(sig, 0.0)


@pytest.mark.parametrize("sampler", FIXED_GRID)
def test_grids_ending_at_zero_never_evaluate_the_score_at_zero(sampler):
    sch = ms.EDM()
    grid = _karras_to_zero()
    X = five_points()
    model = ms.EmpiricalScore(X, sch)
    if sampler == "splitting":  # VP/OU only: the same check on a VP grid to 0
        sch = ms.VP()
        grid = np.append(sch.grid(40), 0.0)
        model = ms.EmpiricalScore(X, sch)
    seen = []

    def den(x, t):
        seen.append(float(np.min(t)))
        assert np.all(np.asarray(t) > 0), "evaluated at t = 0"
        return model.denoise(x, t)

    a = ms.sample(den, start="prior", n=50, schedule=sch, dim=2, output="denoised",
                  sampler=sampler, grid=grid, seed=3)
    assert min(seen) == grid[-2] and a.settings["t_end"] == 0.0
    b = ms.sample(model, 50, sampler=sampler, grid=grid, seed=3)  # the fused C++ loop
    np.testing.assert_allclose(a.samples, b.samples, rtol=1e-9, atol=1e-9)
    if sampler in ("ddim", "ddpm"):  # to 0 they return the denoiser at the left end
        c = ms.sample(model, 50, sampler=sampler, grid=grid[:-1], end="denoised", seed=3)
        np.testing.assert_allclose(b.samples, c.samples, rtol=0, atol=1e-12)
        assert nearest(b.samples, X)[1].max() < 1e-6


def test_heun_to_zero_takes_an_euler_last_step():
    sch, grid = ms.EDM(), _karras_to_zero(6)
    model = ms.EmpiricalScore(five_points(), sch)
    x0 = np.random.default_rng(0).standard_normal((20, 2)) * 80
    full = ms.sample(model, sampler="heun", grid=grid, start=x0)
    head = ms.sample(model, sampler="heun", grid=grid[:-1], start=x0)
    last = ms.sample(model, sampler="euler", grid=grid[-2:], start=head.samples)
    np.testing.assert_allclose(full.samples, last.samples, rtol=1e-12, atol=1e-12)


def test_seed_none_and_generator_are_recorded_and_repeatable():
    model = ms.EmpiricalScore(five_points(), ms.VP())
    a = ms.sample(model, 6, sampler="ddpm", steps=20, seed=None)
    b = ms.sample(model, 6, sampler="ddpm", steps=20, seed=None)
    assert a.settings["seed"] != b.settings["seed"] and not np.array_equal(a.samples, b.samples)
    again = ms.sample(model, 6, sampler="ddpm", steps=20, seed=a.settings["seed"])
    np.testing.assert_array_equal(again.samples, a.samples)
    g1 = ms.sample(model, 6, sampler="ddpm", steps=20, seed=np.random.default_rng(5))
    g2 = ms.sample(model, 6, sampler="ddpm", steps=20, seed=np.random.default_rng(5))
    np.testing.assert_array_equal(g1.samples, g2.samples)
    assert g1.settings["seed"] == g2.settings["seed"]
    with pytest.raises(TypeError, match="seed must be an int, None or a numpy Generator"):
        ms.sample(model, 2, seed=1.5)


def test_start_as_tensor_or_image_stack_and_errors_that_describe_it():
    sch = ms.VP()
    score = lambda x, t: -x  # noqa: E731
    imgs = np.random.default_rng(1).standard_normal((4, 1, 8, 8))
    res = ms.sample(score, start=imgs, schedule=sch, sampler="ddim", steps=5)
    assert res.samples.shape == (4, 64)  # (n, ...) is one flattened row per sample
    flat = ms.sample(score, start=imgs.reshape(4, 64), schedule=sch, sampler="ddim", steps=5)
    np.testing.assert_array_equal(res.samples, flat.samples)
    with pytest.raises(ValueError, match=r"got dim=None and start='prior'"):
        ms.sample(score, 3, schedule=sch)
    with pytest.raises(ValueError, match=r"start array must have shape \(n, 8\).*"
                                         r"got shape \(4, 1, 8, 8\)"):
        ms.sample(score, start=imgs, schedule=sch, dim=8)

    class CpuTensor:  # what a CPU torch tensor offers NumPy: __array__ and a shape
        shape = imgs.shape

        def __array__(self, dtype=None, copy=None):
            return imgs

    t = ms.sample(score, start=CpuTensor(), schedule=sch, sampler="ddim", steps=5)
    np.testing.assert_array_equal(t.samples, res.samples)

    class GpuTensor:  # a CUDA tensor refuses NumPy conversion
        shape, device = (4, 64), "cuda:0"

        def __array__(self, dtype=None, copy=None):
            raise TypeError("can't convert cuda:0 device type tensor to numpy")

    with pytest.raises(TypeError, match=r"start must be .*GpuTensor on device cuda:0 with "
                                        r"shape \(4, 64\).*start.detach\(\).cpu\(\).numpy\(\)"):
        ms.sample(score, start=GpuTensor(), schedule=sch)
    torch = pytest.importorskip("torch")
    t = ms.sample(score, start=torch.from_numpy(imgs), schedule=sch, sampler="ddim", steps=5)
    np.testing.assert_array_equal(t.samples, res.samples)


def test_sample_result_repr_save_and_load(tmp_path):
    model = ms.EmpiricalScore(five_points(), ms.VP())
    res = ms.sample(model, 7, sampler="ddpm", steps=12, start="exact", save_steps=[0, 6],
                    seed=4)
    text = repr(res)
    assert f"samples={res.samples.shape}" in text and "sampler='ddpm'" in text
    assert "seed=4" in text and "\n" not in text and len(text) < 400
    path = tmp_path / "run.npz"
    res.save(path)
    back = ms.SampleResult.load(path)
    for name in ("samples", "times", "saved", "save_steps", "start_index"):
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name))
    assert back.settings == res.settings and back.nfev == res.nfev
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="not a mixscore SampleResult file"):
        ms.SampleResult.load(tmp_path / "other.npz")
