"""Masked arrays: np.asarray drops the mask, so masked entries would be read as values. Every
public entry point refuses a masked array with masked entries and reads one without."""

import mixscore as ms
import numpy as np
import pytest
from conftest import rng


@pytest.fixture
def data():
    g = rng(3)
    X = g.standard_normal((20, 3))
    x = np.ma.masked_array(X[:4] + 0.01, mask=False)
    x[1, 2] = np.ma.masked  # the stored value under the mask stays X[1, 2] + 0.01
    return X, x


def test_masked_entries_refused_everywhere(data, backend):
    X, x = data
    model = ms.EmpiricalScore(X, ms.VP(), backend=backend)
    calls = {
        "train": lambda: ms.EmpiricalScore(np.ma.masked_array(X, mask=X > 2), ms.VP()),
        "x": lambda: model.stats(x, 0.1),
        "queries": lambda: ms.nearest(x, X, backend=backend),
        "samples": lambda: ms.memorization(x, X, backend=backend),
        "weights": lambda: ms.EmpiricalScore(
            X, ms.VP(), weights=np.ma.masked_array(np.ones(20), mask=np.arange(20) == 5)
        ),
        "start": lambda: ms.sample(model, sampler="ddpm", steps=3, start=x),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=rf"^{name} is a masked array with \d+ masked"):
            call()


def test_unmasked_masked_array_reads_its_data(data, backend):
    X, x = data
    model = ms.EmpiricalScore(X, ms.VP(), backend=backend)
    clean = np.ma.masked_array(x.data, mask=False)
    np.testing.assert_array_equal(model.score(clean, 0.1), model.score(x.data, 0.1))
    d, i = ms.nearest(np.ma.masked_array(x.data), X, backend=backend)
    d0, i0 = ms.nearest(x.data, X, backend=backend)
    np.testing.assert_array_equal(d, d0)
    np.testing.assert_array_equal(i, i0)
