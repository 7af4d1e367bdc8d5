"""Property-based tests (hypothesis): the C++ engine equals the reference on arbitrary inputs."""

import mixscore as ms
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

pytestmark = pytest.mark.skipif("cpu" not in ms.available_backends(), reason="no C++ engine")


@st.composite
def problems(draw):
    n = draw(st.integers(1, 40))
    d = draw(st.sampled_from([1, 2, 5, 17, 33]))
    m = draw(st.integers(1, 6))
    elems = st.floats(-100, 100, allow_nan=False, width=64)
    X = draw(arrays(np.float64, (n, d), elements=elems))
    x = draw(arrays(np.float64, (m, d), elements=elems))
    t = draw(st.floats(1e-6, 1.0))
    w = draw(st.none() | arrays(np.float64, (n,), elements=st.floats(1e-3, 1e3)))
    return X, x, t, w


@settings(max_examples=150, deadline=None)
@given(problems())
def test_engine_matches_reference(problem):
    X, x, t, w = problem
    sde = ms.VE(0.01, 100.0)
    got = ms.EmpiricalScore(X, sde, w, backend="cpu").stats(x, t)
    want = ms.EmpiricalScore(X, sde, w, backend="numpy").stats(x, t)
    scale = max(1.0, float(np.abs(X).max()))
    s2 = float(sde.sigma2(t))
    # near-ties are conditioned like |x - X|^2 u / sigma^2 (float64 rounding of both sides)
    cond = 1e-12 * (1 + (np.abs(x).max() + scale) ** 2 / s2) * scale
    np.testing.assert_allclose(got.denoised, want.denoised, atol=cond)
    np.testing.assert_allclose(got.logpdf, want.logpdf, rtol=1e-10, atol=1e-9)
    assert np.all(got.max_weight <= 1) and np.all(got.n_eff >= 1 - 1e-12)
    assert np.all(got.n_eff <= X.shape[0] * (1 + 1e-12))
