"""One exact squared distance with one rounding rule (cpp/include/mixscore/exact.hpp): the
engine's exact logits, from the row routine (GEMM path, D >= 16) and from the column routine
(direct path, D < 16), are bit for bit those of an independent NumPy evaluation of the same
rule, for any sign of alpha and with weights; and the expansion bound (bound.hpp) stays valid
for negative alpha."""

import mixscore as ms
import numpy as np
import pytest
from conftest import reference, rng

pytestmark = pytest.mark.skipif("cpu" not in ms.available_backends(), reason="no C++ engine")


def lam_rule(x, X, alpha, two_s2_logw):
    """(m, n): t_d = x_d - alpha X_nd, squares into 8 lanes (d mod 8, increasing d), combined as
    ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7)), minus (2 sigma^2) log pi_n."""
    x = np.asarray(x, np.float64)
    X = np.asarray(X, np.float64)
    s = np.zeros((8, x.shape[0], X.shape[0]))
    for d in range(x.shape[1]):
        t = x[:, None, d] - alpha * X[None, :, d]
        s[d % 8] = s[d % 8] + t * t
    return (((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]))) - two_s2_logw


@pytest.mark.parametrize("d", [1, 2, 3, 4, 7, 9, 15, 16, 20, 64])
@pytest.mark.parametrize("alpha", [1.0, 0.7, -0.8])
@pytest.mark.parametrize("weighted", [False, True])
def test_exact_logits_follow_the_rule(d, alpha, weighted):
    """At tiny sigma every kept logit is exact; lam_min is the smallest one, bit for bit."""
    g = rng(d)
    X = g.standard_normal((700, d)) + 3.0
    w = g.uniform(0.5, 2.0, 700) if weighted else None
    x = alpha * X[g.integers(0, 700, 9)] + 0.01 * g.standard_normal((9, d))
    sigma2 = 1e-6
    for dtype in (np.float32, np.float64):
        Xt, xt = X.astype(dtype), x.astype(dtype)
        model = ms.EmpiricalScore(Xt, ms.VP(), w, backend="cpu")
        got = model.backend.stats(xt, np.full(9, alpha), np.full(9, sigma2), {"lam_min", "argmax"})
        tw = 0.0 if w is None else (2.0 * sigma2) * np.log(w)
        lam = lam_rule(xt, Xt, alpha, tw)
        np.testing.assert_array_equal(got["argmax"], lam.argmin(axis=1))
        np.testing.assert_array_equal(got["lam_min"], lam.min(axis=1))


@pytest.mark.parametrize("d", [16, 64])
def test_negative_alpha_near_tie_gemm_path(d):
    """Two training points whose exact logits differ by ~10 nats while the float32 expansion is
    off by thousands: the bound (|alpha| in it) must send them to exact refinement."""
    g = rng(11)
    X = (g.standard_normal((3000, d)) + 4.0).astype(np.float32)
    X[1] = X[0] + 0.02 * g.standard_normal(d).astype(np.float32)
    alpha, sigma2 = -0.9, 1e-4
    x = (alpha * (0.55 * X[0].astype(np.float64) + 0.45 * X[1])).astype(np.float32)[None]
    got = ms.EmpiricalScore(X, ms.VP()).stats_at_noise(x, alpha, sigma2)
    want = reference(X, ms.VP()).stats_at_noise(x, alpha, sigma2)
    np.testing.assert_array_equal(got.argmax, want.argmax)
    np.testing.assert_allclose(got.logpdf, want.logpdf, rtol=1e-6)
    np.testing.assert_allclose(got.denoised, want.denoised, rtol=0, atol=1e-5 * 8)


@pytest.mark.parametrize("d", [200, 1000])
@pytest.mark.parametrize("alpha", [1.0, -0.9])
def test_expansion_bound_holds_for_plain_and_precise_products(d, alpha):
    """|A - d^2| <= E entry by entry, where A is the engine's float32 GEMM expansion (plain: one
    float32 chain per entry; precise: float32 slices of KC terms summed in float64) and E its
    bound (bound.hpp), against d^2 in extended precision; on data offset from 0 (the expansion
    is about the mean), near and far queries. The precise bound is several times tighter at
    D > KC: the intermediate-noise regime no longer needs per-entry refinement."""
    _bench = pytest.importorskip("mixscore._bench")
    g = rng(d)
    X = (g.uniform(0, 1, (300, d)) * 255).round() / 255 + 3.0  # pixel-like, off-centre
    X = X.astype(np.float32)
    near = alpha * X[:6] + 0.01 * g.standard_normal((6, d))
    far = alpha * X[6:12] + 10.0 * g.standard_normal((6, d))
    x = np.concatenate([near, far]).astype(np.float32)
    diff = x.astype(np.longdouble)[:, None, :] - np.longdouble(alpha) * X.astype(np.longdouble)
    d2 = (diff * diff).sum(axis=2)
    bounds = {}
    for precise in (False, True):
        A, E = _bench.expansion(X, x, alpha, precise)
        err = np.abs(A.astype(np.longdouble) - d2)
        assert np.all(err <= E), (precise, float((err / E).max()))
        # the bound is not vacuous: the realized error reaches a visible fraction of it
        assert float((err / E).max()) > 1e-4
        bounds[precise] = E
    assert np.all(bounds[True] < bounds[False] / (0.8 * d / 193))


@pytest.mark.parametrize("sigma", [2.0, 5.0, 10.0, 30.0])
def test_intermediate_noise_accuracy_d784(sigma):
    """The slow band of issue 17 (float32, D = 784, standard-normal data, sigma where the plain
    product's bound exceeds approx_cap): the precise product keeps the accuracy contract."""
    g = rng(784)
    X = g.standard_normal((1500, 784)).astype(np.float32)
    x = (X[g.integers(0, 1500, 20)] + sigma * g.standard_normal((20, 784))).astype(np.float32)
    got = ms.EmpiricalScore(X, ms.EDM()).stats_at_noise(x, 1.0, sigma**2)
    want = reference(X, ms.EDM()).stats_at_noise(x, 1.0, sigma**2)
    np.testing.assert_allclose(got.denoised, want.denoised, rtol=0, atol=1e-4)
    np.testing.assert_allclose(got.logpdf, want.logpdf, rtol=1e-6)
