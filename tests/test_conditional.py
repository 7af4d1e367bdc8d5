"""Conditional scores: the unconditional formula restricted to one label's points, normalized
over that group (memorization paper Thm 6.4, corrected in SCIENCE.md section 4)."""

import mixscore as ms
import numpy as np
import pytest
from conftest import rng
from mixscore.regularizers import Tikhonov


def test_conditional_is_the_model_of_the_labelled_subset(backend):
    g = rng(0)
    X = g.normal(size=(60, 3))
    y = g.integers(0, 3, size=60)
    m = ms.EmpiricalScore(X, ms.VP(), labels=y, backend=backend)
    x = g.normal(size=(9, 3))
    per_query = np.array([2, 0, 1] * 3)
    st = m.stats(x, 0.2, y=per_query)
    for label in range(3):
        rows = per_query == label
        idx = np.flatnonzero(y == label)
        sub = ms.EmpiricalScore(X[idx], ms.VP(), backend="numpy")
        ref = sub.stats(x[rows], 0.2)
        np.testing.assert_allclose(st.score[rows], ref.score, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(st.logpdf[rows], ref.logpdf, rtol=1e-12)
        np.testing.assert_array_equal(st.argmax[rows], idx[ref.argmax])  # global indices
        np.testing.assert_allclose(
            m.denoise(x[rows], 0.2, y=label), ref.denoised, rtol=1e-9, atol=1e-12
        )
    # without y: the unconditional model
    np.testing.assert_allclose(
        m.score(x, 0.2), ms.EmpiricalScore(X, ms.VP()).score(x, 0.2), rtol=1e-9, atol=1e-12
    )


def test_conditional_regularized_and_covariance():
    g = rng(1)
    X = g.normal(size=(20, 2))
    y = np.array(["a", "b"] * 10)
    m = ms.EmpiricalScore(X, ms.VE(), labels=y, regularizer=Tikhonov(0.1))
    sub = ms.EmpiricalScore(X[1::2], ms.VE(), regularizer=Tikhonov(0.1))
    x = g.normal(size=(4, 2))
    np.testing.assert_allclose(m.score(x, 0.3, y="b"), sub.score(x, 0.3), rtol=1e-12)
    np.testing.assert_allclose(m.cov(x, 0.3, y="b"), sub.cov(x, 0.3), rtol=1e-12)
    draws = m.posterior_draws(x, 0.3, 20, y="a")
    assert np.all(draws % 2 == 0)  # only points labelled "a"


def test_unique_labels_pf_ode_returns_the_labelled_point():
    X = ms.datasets.gaussian_points()
    labels = np.arange(len(X))
    m = ms.EmpiricalScore(X, ms.VP(), labels=labels)
    want = np.array([0, 7, 19, 7, 3])
    res = ms.sample(m, n=5, sampler="ddim", steps=100, seed=4, y=want, end="denoised")
    np.testing.assert_allclose(res.samples, X[want], atol=1e-6)


def test_bad_labels():
    X = rng(2).normal(size=(6, 2))
    with pytest.raises(ValueError, match=r"labels must have shape \(6,\)"):
        ms.EmpiricalScore(X, ms.VE(), labels=[0, 1])
    m = ms.EmpiricalScore(X, ms.VE(), labels=[0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="y: label 5 has no training points"):
        m.score(X[:2], 0.5, y=5)
    with pytest.raises(ValueError, match=r"y must be one label or one per query"):
        m.score(X[:2], 0.5, y=[0, 1, 2])
    with pytest.raises(ValueError, match="y: label 9 has no training points"):
        ms.sample(m, n=3, steps=10, y=9)
    with pytest.raises(ValueError, match="labels="):
        ms.EmpiricalScore(X, ms.VE()).score(X[:2], 0.5, y=0)
