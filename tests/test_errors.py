"""Bad input: a clear error naming the argument, raised before any work."""

import mixscore as ms
import numpy as np
import pytest


@pytest.fixture
def model(backend):
    return ms.EmpiricalScore(np.random.default_rng(0).standard_normal((10, 3)), ms.VP(),
                             backend=backend)


def test_train_errors(backend):
    sde = ms.VP()
    # an empty training set is a valid (empty) shard, but it has no statistics
    empty = ms.EmpiricalScore(np.zeros((0, 3)), sde, backend=backend)
    with pytest.raises(ValueError, match="no training points.*only partial"):
        empty.denoise(np.zeros(3), 0.5)
    with pytest.raises(ValueError, match="train must be a 2-d"):
        ms.EmpiricalScore(np.zeros(3), sde, backend=backend)
    with pytest.raises(ValueError, match="train contains NaN or Inf.*row 1"):
        ms.EmpiricalScore(np.array([[0.0, 1.0], [np.nan, 0.0]]), sde, backend=backend)
    with pytest.raises(TypeError, match="train must be a real numeric"):
        ms.EmpiricalScore(np.array([["a", "b"]]), sde, backend=backend)
    with pytest.raises(TypeError, match="schedule"):
        ms.EmpiricalScore(np.zeros((2, 2)), "vp", backend=backend)
    with pytest.raises(ValueError, match="backend"):
        ms.EmpiricalScore(np.zeros((2, 2)), sde, backend="gpu")
    with pytest.raises(TypeError, match="dtype"):
        ms.EmpiricalScore(np.zeros((2, 2)), sde, dtype=np.int32, backend=backend)


@pytest.mark.parametrize("w, match", [
    ([1.0, -1.0], r"weights must be > 0.*weights\[1\] = -1"),
    ([1.0, 0.0], r"weights must be > 0"),
    ([1.0, np.inf], "NaN or Inf"),
    ([1.0], r"shape \(2,\)"),
])
def test_weight_errors(backend, w, match):
    with pytest.raises(ValueError, match=match):
        ms.EmpiricalScore(np.zeros((2, 2)), ms.VP(), w, backend=backend)


def test_query_errors(model):
    with pytest.raises(ValueError, match=r"x must have shape \(M, 3\)"):
        model.score(np.zeros((4, 2)), 0.5)
    with pytest.raises(ValueError, match=r"x must have shape"):
        model.score(np.zeros((2, 2, 3)), 0.5)
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        model.score(np.array([[0.0, np.inf, 0.0]]), 0.5)
    for t in [0.0, -1.0, 1.5, np.nan]:
        with pytest.raises(ValueError, match=r"t must lie in \(0, T\]"):
            model.score(np.zeros((4, 3)), t)
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(4,\)"):
        model.score(np.zeros((4, 3)), np.full(3, 0.5))
    with pytest.raises(ValueError, match="unknown statistics"):
        model.stats(np.zeros((4, 3)), 0.5, include=["score", "hessian"])


def test_noise_level_errors(model):
    x = np.zeros((2, 3))
    for alpha, sigma2, match in [(np.nan, 1.0, "alpha must be finite, got nan"),
                                 (np.inf, 1.0, "alpha must be finite, got inf"),
                                 (1.0, -1.0, "sigma2 must be finite and >= 0, got -1.0"),
                                 (1.0, np.nan, "sigma2 must be finite"),
                                 (1.0, 0.0, r"sigma2 = 0 \(t = 0\)")]:
        with pytest.raises(ValueError, match=match):
            model.stats_at_noise(x, alpha, sigma2)
    # alpha = 0: the posterior mean is defined (the prior mean), a regularized denoiser is not
    assert np.all(np.isfinite(model.stats_at_noise(x, 0.0, 1.0).denoised))
    reg = ms.EmpiricalScore(model.train, ms.VP(), regularizer=ms.regularizers.Tikhonov(0.1))
    with pytest.raises(ValueError, match="alpha = 0: a regularized model's denoiser"):
        reg.stats_at_noise(x, 0.0, 1.0)
    np.testing.assert_allclose(reg.stats_at_noise(x + 1.0, 0.0, 1.0, include="score").score,
                               -(x + 1.0) / 1.1)


def test_conversions_accepted(model):
    """Integer and non-contiguous inputs are converted, not refused."""
    x = np.arange(24, dtype=np.int64).reshape(4, 6)[:, ::2]
    assert not x.flags.c_contiguous
    out = model.score(x, 0.5)
    np.testing.assert_allclose(out, model.score(np.ascontiguousarray(x, float), 0.5))
    assert model.score(np.zeros(3), 0.5).shape == (3,)  # a single query
    assert model.score(np.zeros((0, 3)), 0.5).shape == (0, 3)  # no queries


def test_float64_train_never_downcast(backend):
    m = ms.EmpiricalScore(np.zeros((3, 2)), ms.VP(), backend=backend)
    assert m.dtype == np.float64
    assert m.score(np.zeros((1, 2), np.float32), 0.5).dtype == np.float64
    m32 = ms.EmpiricalScore(np.zeros((3, 2), np.float32), ms.VP(), backend=backend)
    assert m32.score(np.zeros((1, 2)), 0.5).dtype == np.float32
