"""The C++ posterior-draws handler (cpp/src/draws.hpp) and the fused naive sampler: the same
Philox streams and, in float64, the same indices and samples as the NumPy reference
(``mixscore.covariance.posterior_draws`` and the Python loop over the numpy backend); draws
that follow w (chi-squared against a direct float64 softmax); independence of thread count
and batch split; bad input; Ctrl-C."""

import mixscore as ms
import numpy as np
import pytest
from mixscore import _core, covariance

pytestmark = [
    pytest.mark.skipif("cpu" not in ms.available_backends(), reason="no C++ engine"),
    pytest.mark.filterwarnings("ignore:.*stiffness rho:RuntimeWarning"),
]


def reference_draws(model, x, t, R, seed, first_step=0):
    """The NumPy reference on the model's own partial state, rows 0..M-1."""
    sch = model.schedule
    m = x.shape[0]
    a, s2 = np.full(m, float(sch.alpha(t))), np.full(m, float(sch.sigma2(t)))
    part = model.backend.partial(np.ascontiguousarray(x, model.dtype), a, s2)
    return covariance.posterior_draws(model, part, R, seed, np.arange(m), first_step,
                                      order=model.backend.prepared.visit_order)


def data(n, d, seed=0, weights=False, dtype=np.float64):
    r = np.random.default_rng(seed)
    X = r.standard_normal((n, d)).astype(dtype)
    x = (0.9 * X[:40] + 0.3 * r.standard_normal((40, d))).astype(dtype)
    return X, x, (r.uniform(0.2, 3.0, n) if weights else None)


# D = 2: direct tiles; 20: the GEMM expansion; 200: the GEMM path with lookahead hints
@pytest.mark.parametrize("d,n", [(2, 3000), (20, 1500), (200, 1100)])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("t", [0.01, 0.2, 1.0])
def test_float64_draws_equal_the_numpy_reference(d, n, weights, t):
    X, x, w = data(n, d, seed=d, weights=weights)
    model = ms.EmpiricalScore(X, ms.VP(), weights=w)
    got = model.posterior_draws(x, t, 3, seed=11)
    np.testing.assert_array_equal(got, reference_draws(model, x, t, 3, 11))
    assert len(np.unique(got)) > 1


@pytest.mark.parametrize("d", [3, 64])
def test_float32_draws_match_the_reference_where_logits_agree(d):
    X, x, _ = data(1200, d, seed=5, dtype=np.float32)
    model = ms.EmpiricalScore(X, ms.VP())
    for t in (0.05, 0.5):
        got = model.posterior_draws(x, t, 4, seed=2)
        agree = np.mean(got == reference_draws(model, x, t, 4, 2))
        assert agree >= 0.97, (t, agree)


@pytest.mark.parametrize("d", [2, 24])
def test_draws_follow_the_posterior_weights(d):
    """Chi-squared of 20000 draws against w_n from a direct float64 softmax (small N)."""
    scipy_stats = pytest.importorskip("scipy.stats")
    r = np.random.default_rng(d)
    X = r.standard_normal((6, d))
    pi = np.array([1.0, 2.0, 0.5, 1.0, 3.0, 1.0])
    model = ms.EmpiricalScore(X, ms.VP(), weights=pi)
    sch, t = ms.VP(), 0.9
    a, s2 = float(sch.alpha(t)), float(sch.sigma2(t))
    x = a * X.mean(0) + 0.2 * r.standard_normal(d)
    logits = np.log(pi) - ((x - a * X) ** 2).sum(1) / (2 * s2)
    w = np.exp(logits - logits.max())
    w /= w.sum()
    assert w.min() > 0.01  # every cell is populated: the test is not degenerate
    draws = model.posterior_draws(np.tile(x, (500, 1)), t, 40, seed=4).ravel()
    counts = np.bincount(draws, minlength=6)
    assert scipy_stats.chisquare(counts, w * counts.sum()).pvalue > 1e-3


def test_draws_do_not_depend_on_threads_or_batch_split():
    X, x, _ = data(2500, 20, seed=3, dtype=np.float32)
    one = ms.EmpiricalScore(X, ms.VP(), num_threads=1).posterior_draws(x, 0.4, 3, seed=8)
    two = ms.EmpiricalScore(X, ms.VP(), num_threads=2).posterior_draws(x, 0.4, 3, seed=8)
    np.testing.assert_array_equal(one, two)
    model = ms.EmpiricalScore(X, ms.VP())
    np.testing.assert_array_equal(model.posterior_draws(x[:7], 0.4, 3, seed=8), one[:7])
    assert not np.array_equal(model.posterior_draws(x, 0.4, 3, seed=9), one)


@pytest.mark.parametrize("d", [3, 20])
def test_fused_naive_equals_the_python_loop_in_float64(d):
    X, _, _ = data(400, d, seed=d)
    kw = dict(sampler="naive", R=4, steps=40, seed=6)
    fused = ms.sample(ms.EmpiricalScore(X, ms.VP()), 60, fused=True, **kw)
    ref = ms.sample(ms.EmpiricalScore(X, ms.VP(), backend="numpy"), 60, **kw)
    assert fused.settings["fused"] and not ref.settings["fused"]
    np.testing.assert_array_equal(fused.samples, ref.samples)


def test_fused_naive_float32_close_to_the_python_loop():
    X, _, _ = data(400, 20, seed=4, dtype=np.float32)
    kw = dict(sampler="naive", R=4, steps=40, seed=6, end="denoised")
    fused = ms.sample(ms.EmpiricalScore(X, ms.VP()), 60, **kw).samples
    ref = ms.sample(ms.EmpiricalScore(X, ms.VP(), backend="numpy"), 60, **kw).samples
    close = np.all(np.abs(fused - ref) < 1e-4, axis=1)
    assert close.mean() >= 0.95


def test_fused_naive_does_not_depend_on_threads():
    X, _, _ = data(600, 20, seed=7, dtype=np.float32)
    kw = dict(sampler="naive", R=2, steps=25, seed=1)
    one = ms.sample(ms.EmpiricalScore(X, ms.VP(), num_threads=1), 150, **kw).samples
    two = ms.sample(ms.EmpiricalScore(X, ms.VP(), num_threads=2), 150, batch_size=40, **kw)
    np.testing.assert_array_equal(one, two.samples)


def test_bad_draw_counts_are_refused():
    X, x, _ = data(50, 3)
    model = ms.EmpiricalScore(X, ms.VP())
    p, opt = model.backend.prepared, model.backend.options
    one = np.ones(2)
    with pytest.raises(ValueError, match=r"R \(the number of posterior draws\) must be >= 1"):
        _core.draws(p, x[:2], one, one, 0, 0, np.arange(2), 0, opt)
    with pytest.raises(ValueError, match="rows: expected a 1-d array of length 2"):
        _core.draws(p, x[:2], one, one, 1, 0, np.arange(3), 0, opt)
    with pytest.raises(ValueError, match=r"first_step \+ R must be <= 2\*\*32"):
        _core.draws(p, x[:2], one, one, 2, 0, np.arange(2), 2**32 - 1, opt)
    with pytest.raises(ValueError, match=r"R \(the number of posterior draws\)"):
        model.posterior_draws(x[0], 0.5, 0)


def test_fused_naive_needs_the_draws_capability():
    model = ms.EmpiricalScore(np.eye(3), ms.VP(), backend="numpy")
    with pytest.raises(ValueError, match="fused=True needs an EmpiricalScore"):
        ms.sample(model, 2, steps=3, sampler="naive", R=2, fused=True)
