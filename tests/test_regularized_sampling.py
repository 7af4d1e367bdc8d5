"""Regularized models in the fused C++ sampler (issue 13): Smoothing and Tikhonov fold into the
per-step coefficients, Empirical Bayes and a constant perturbation are applied per sample by
the C++ loop (mixscore/sampling/fold.py), and the fused loop equals the Python loop, which
applies them through the statistics; a callable perturbation and per-point bandwidths stay in
the Python loop; models whose score is bounded at sigma -> 0 are defined at t = 0."""

import mixscore as ms
import numpy as np
import pytest
from mixscore.regularizers import EmpiricalBayes, Perturbation, Smoothing, Tikhonov

pytestmark = [
    pytest.mark.skipif("cpu" not in ms.available_backends(), reason="no C++ engine"),
    pytest.mark.filterwarnings("ignore:.*stiffness rho:RuntimeWarning"),
]

REGULARIZERS = {
    "tikhonov": lambda: Tikhonov(0.05),
    "tikhonov_of_t": lambda: Tikhonov(lambda t: 0.02 + 0.1 * t),
    "smoothing": lambda: Smoothing(0.1),
    "both": lambda: [Smoothing(0.05), Tikhonov(0.03)],
    "eb_kernel_sum": lambda: EmpiricalBayes(30.0),
    "eb_density_of_t": lambda: EmpiricalBayes(lambda t: 0.5 + t, units="density"),
    "perturbation": lambda: Perturbation(np.linspace(-0.5, 0.5, 5)),
    "all": lambda: [Smoothing(0.05), Tikhonov(0.03), EmpiricalBayes(30.0),
                    Perturbation(np.full(5, 0.2))],
}


def _data(dtype=np.float64):
    g = np.random.default_rng(5)
    return g.standard_normal((300, 5)).astype(dtype)


@pytest.mark.parametrize("reg", sorted(REGULARIZERS))
@pytest.mark.parametrize("sampler", ["euler", "euler_maruyama", "heun", "ddim", "ddpm"])
def test_fused_equals_python_loop(reg, sampler):
    model = ms.EmpiricalScore(_data(), ms.VP(), regularizer=REGULARIZERS[reg]())
    kw = dict(n=12, sampler=sampler, steps=25, seed=3, progress=False, end="denoised")
    fused = ms.sample(model, fused=True, **kw)
    python = ms.sample(model, fused=False, **kw)
    assert fused.settings["fused"] and not python.settings["fused"]
    assert ms.sample(model, **kw).settings["fused"]  # the default takes the C++ loop
    np.testing.assert_allclose(fused.samples, python.samples, rtol=1e-9, atol=1e-9)


def test_fused_regularized_differs_from_plain():
    """The folding is not a no-op: Tikhonov at a large c pulls less towards the data."""
    X = _data()
    kw = dict(n=12, sampler="euler", steps=25, seed=3, progress=False)
    plain = ms.sample(ms.EmpiricalScore(X, ms.VP()), **kw).samples
    reg = ms.sample(ms.EmpiricalScore(X, ms.VP(), regularizer=Tikhonov(1.0)), **kw).samples
    assert np.abs(plain - reg).max() > 0.1


def test_fused_float32_close_to_python_loop():
    model = ms.EmpiricalScore(_data(np.float32), ms.VP(), regularizer=Tikhonov(0.05))
    kw = dict(n=12, sampler="heun", steps=25, seed=3, progress=False)
    np.testing.assert_allclose(ms.sample(model, fused=True, **kw).samples,
                               ms.sample(model, fused=False, **kw).samples, atol=1e-4)


def test_grid_ending_at_zero_with_tikhonov():
    """The step into t = 0 uses its left end only; fused and Python loops agree."""
    model = ms.EmpiricalScore(_data(), ms.VP(), regularizer=Tikhonov(0.05))
    grid = np.concatenate([np.geomspace(1.0, 1e-3, 20), [0.0]])
    for sampler in ("euler", "heun", "ddpm"):
        kw = dict(n=8, sampler=sampler, grid=grid, seed=1, progress=False)
        a = ms.sample(model, fused=True, **kw).samples
        b = ms.sample(model, fused=False, **kw).samples
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("reg", [Perturbation(lambda x, t: 0.1 * x),
                                 Smoothing(np.full(300, 0.1))])
def test_callable_perturbation_and_per_point_smoothing_stay_in_the_python_loop(reg):
    model = ms.EmpiricalScore(_data(), ms.VP(), regularizer=reg)
    kw = dict(n=4, steps=5, seed=0, progress=False)
    assert not ms.sample(model, **kw).settings["fused"]
    with pytest.raises(ValueError, match=type(reg).__name__):
        ms.sample(model, fused=True, **kw)


def test_tikhonov_score_at_t_zero_is_the_limit():
    """sigma = 0: the posterior is the hard assignment, s = (X_nearest - x) / c (Eq. 5.7 at
    sigma = 0), the denoiser form returns x, the log-density is that of the atoms."""
    X = _data()
    c = 0.1
    model = ms.EmpiricalScore(X, ms.VP(), regularizer=Tikhonov(c))
    g = np.random.default_rng(0)
    x = np.concatenate([X[:1], X[1:6] + 0.05 * g.standard_normal((5, 5))])
    st = model.stats(x, 0.0)
    nearest = X[np.argmin(((x[:, None, :] - X[None]) ** 2).sum(-1), axis=1)]
    np.testing.assert_allclose(st.score, (nearest - x) / c, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(st.denoised, x, rtol=0, atol=0)
    assert st.logpdf[0] == np.inf and np.all(st.logpdf[1:] == -np.inf)
    np.testing.assert_array_equal(st.trace_cov, 0.0)
    # the limit is continuous: sigma^2 = 1e-12 gives the same score
    near = model.stats_at_noise(x, 1.0, 1e-12, include="score").score
    np.testing.assert_allclose(near, st.score, rtol=1e-9, atol=1e-9)


def test_smoothing_is_defined_at_t_zero():
    X = _data()
    h = 0.2
    model = ms.EmpiricalScore(X, ms.VP(), regularizer=Smoothing(h))
    x = X[:4] + 0.3
    # at t = 0 (alpha = 1, sigma = 0) the smoothed mixture has variance h^2
    plain = ms.EmpiricalScore(X, ms.VP()).stats_at_noise(x, 1.0, h * h, include="logpdf")
    np.testing.assert_allclose(model.stats(x, 0.0, include="logpdf").logpdf, plain.logpdf,
                               rtol=1e-12)


def test_t_zero_refused_where_the_score_is_unbounded():
    X = _data()
    with pytest.raises(ValueError, match=r"\(0, T\]"):
        ms.EmpiricalScore(X, ms.VP()).score(X[:2], 0.0)
    with pytest.raises(ValueError, match="Tikhonov"):
        ms.EmpiricalScore(X, ms.VP()).stats_at_noise(X[:2], 1.0, 0.0)
    zero_at_0 = ms.EmpiricalScore(X, ms.VP(), regularizer=Tikhonov(lambda t: t))
    with pytest.raises(ValueError, match="unbounded"):
        zero_at_0.score(X[:2], 0.0)


def _dense_per_point(X, w, x, alpha, sigma2, h):
    """log p and its score for the per-point smoothed mixture, a direct transcription."""
    s2 = sigma2 + alpha**2 * h**2  # (N,)
    d = X.shape[1]
    d2 = ((x[:, None, :] - alpha * X[None]) ** 2).sum(-1)
    logc = np.log(w)[None] - 0.5 * d * np.log(2 * np.pi * s2)[None] - d2 / (2 * s2)[None]
    top = logc.max(axis=1, keepdims=True)
    e = np.exp(logc - top)
    logp = (top[:, 0] + np.log(e.sum(axis=1))) - np.log(w.sum())
    post = e / e.sum(axis=1, keepdims=True)
    score = np.einsum("mn,mnd->md", post / s2[None], alpha * X[None] - x[:, None, :])
    return logp, score, post


def test_per_point_smoothing_matches_the_transcription():
    g = np.random.default_rng(9)
    X = g.standard_normal((400, 3))
    w = g.uniform(0.5, 2.0, 400)
    h = g.uniform(0.0, 0.5, 400)
    x = 0.8 * X[:7] + 0.4 * g.standard_normal((7, 3))
    t = 0.3
    model = ms.EmpiricalScore(X, ms.VP(), w, regularizer=Smoothing(h))
    a, s2 = float(ms.VP().alpha(t)), float(ms.VP().sigma2(t))
    logp, score, post = _dense_per_point(X, w, x, a, s2, h)
    st = model.stats(x, t, include=("logpdf", "score", "denoised", "max_weight", "argmax",
                                    "n_eff", "entropy"))
    np.testing.assert_allclose(st.logpdf, logp, rtol=1e-12)
    np.testing.assert_allclose(st.score, score, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(st.denoised, (x + s2 * score) / a, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(st.max_weight, post.max(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(st.argmax, post.argmax(axis=1))
    np.testing.assert_allclose(st.n_eff, 1 / (post**2).sum(axis=1), rtol=1e-10)
    np.testing.assert_allclose(st.entropy, -(post * np.log(post)).sum(axis=1), rtol=1e-10)
    # the score is the gradient of the log-density (central differences)
    eps = 1e-6
    for k in range(3):
        dx = np.zeros(3)
        dx[k] = eps
        fd = (model.stats(x + dx, t, include="logpdf").logpdf
              - model.stats(x - dx, t, include="logpdf").logpdf) / (2 * eps)
        np.testing.assert_allclose(fd, st.score[:, k], rtol=1e-5, atol=1e-6)


def test_per_point_smoothing_equal_bandwidths_is_global_smoothing():
    X = _data()
    x = X[:6] + 0.2
    for extra in ([], [Tikhonov(0.05)], [Perturbation(np.full(5, 0.3))]):
        a = ms.EmpiricalScore(X, ms.VP(), regularizer=[Smoothing(np.full(300, 0.15)), *extra])
        b = ms.EmpiricalScore(X, ms.VP(), regularizer=[Smoothing(0.15), *extra])
        sa, sb = a.stats(x, 0.4), b.stats(x, 0.4)
        for name in ("logpdf", "score", "denoised", "max_weight", "n_eff"):
            np.testing.assert_allclose(getattr(sa, name), getattr(sb, name), rtol=1e-9,
                                       atol=1e-12, err_msg=name)
        assert sa.trace_cov is None and sa.tau2 is None


def test_per_point_smoothing_in_samplers_and_at_t_zero():
    X = _data()
    h = np.random.default_rng(1).uniform(0.05, 0.2, 300)
    model = ms.EmpiricalScore(X, ms.VP(), regularizer=Smoothing(h))
    res = ms.sample(model, n=6, steps=10, seed=0, progress=False)
    assert not res.settings["fused"] and np.all(np.isfinite(res.samples))
    with pytest.raises(ValueError, match="Smoothing"):
        ms.sample(model, n=6, steps=10, seed=0, progress=False, fused=True)
    st = model.stats(X[:3] + 0.1, 0.0, include="score")  # bounded: every h_n > 0
    assert np.all(np.isfinite(st.score))


def test_per_point_smoothing_bad_input():
    X = _data()
    with pytest.raises(ValueError, match=r"shape \(300,\)"):
        ms.EmpiricalScore(X, ms.VP(), regularizer=Smoothing(np.ones(5)))
    with pytest.raises(ValueError, match="bandwidth"):
        Smoothing(np.array([0.1, -1.0]))
    with pytest.raises(ValueError, match="regularizer: EmpiricalBayes does not compose"):
        ms.EmpiricalScore(X, ms.VP(), regularizer=[Smoothing(np.ones(300)), EmpiricalBayes(1.0)])
    plain = ms.EmpiricalScore(X, ms.VP(), regularizer=Smoothing(np.ones(300)))
    with pytest.raises(ValueError, match="one bandwidth per point"):
        plain.posterior_draws(X[:2], 0.5, R=2)


@pytest.mark.parametrize("sampler,kw", [("euler_maruyama", {}), ("heun", {}),
                                        ("naive", {"R": 3})])
def test_labelled_fused_equals_python_loop(sampler, kw):
    """Labelled samples run by label in the fused loop (each label's sub-model, the samples'
    own noise and draw streams): equal to the Python loop, with regularizers too, for any
    batch size."""
    X = _data()
    labels = np.arange(300) % 3
    y = np.random.default_rng(4).integers(0, 3, 10)
    for reg in (None, [Tikhonov(0.05), EmpiricalBayes(30.0)]):
        if sampler == "naive" and reg is not None:
            continue  # (the naive sampler takes unregularized models)
        model = ms.EmpiricalScore(X, ms.VP(), labels=labels, regularizer=reg)
        args = dict(n=10, y=y, sampler=sampler, steps=15, seed=2, progress=False,
                    save_steps=[0, 7], end="denoised" if sampler != "naive" else "as_is", **kw)
        fused = ms.sample(model, fused=True, batch_size=4, **args)
        python = ms.sample(model, fused=False, **args)
        assert fused.settings["fused"] and ms.sample(model, **args).settings["fused"]
        np.testing.assert_allclose(fused.samples, python.samples, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(fused.saved, python.saved, rtol=1e-9, atol=1e-9)
        if reg is None and sampler != "naive":  # the exact conditional denoiser at t_end
            nearest = np.argmin(((fused.samples[:, None] - X[None]) ** 2).sum(-1), axis=1)
            np.testing.assert_array_equal(labels[nearest], y)


def test_per_point_smoothing_with_labels_uses_each_groups_bandwidths():
    X = _data()
    labels = np.arange(300) % 2
    h = np.where(labels == 0, 0.05, 0.3)
    model = ms.EmpiricalScore(X, ms.VP(), labels=labels, regularizer=Smoothing(h))
    x = X[:4] + 0.1
    for lab in (0, 1):
        sub = ms.EmpiricalScore(X[labels == lab], ms.VP(),
                                regularizer=Smoothing(h[labels == lab]))
        np.testing.assert_allclose(model.score(x, 0.3, y=lab), sub.score(x, 0.3), rtol=1e-12)
