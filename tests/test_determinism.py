"""Results are bit-identical for any thread count and any split of the queries into calls."""

import mixscore as ms
import numpy as np
import pytest
from conftest import rng

pytestmark = pytest.mark.skipif("cpu" not in ms.available_backends(), reason="no C++ engine")


def _all(st):
    return st.as_dict()


@pytest.mark.parametrize("d", [2, 64, 300])
@pytest.mark.parametrize("t", [1e-4, 0.05, 0.5])
def test_threads_and_batch_split(d, t):
    r = rng(d)
    X = r.standard_normal((3000, d)).astype(np.float32)
    x = (X[r.integers(0, 3000, 333)] + 0.5 * r.standard_normal((333, d))).astype(np.float32)
    sde = ms.VP()
    one = ms.EmpiricalScore(X, sde, num_threads=1).stats(x, t)
    two = ms.EmpiricalScore(X, sde, num_threads=2).stats(x, t)
    model = ms.EmpiricalScore(X, sde)
    parts = [model.stats(x[a:b], t) for a, b in [(0, 1), (1, 130), (130, 333)]]
    perm = r.permutation(333)
    shuffled = model.stats(x[perm], t)
    for name, v in _all(one).items():
        np.testing.assert_array_equal(v, getattr(two, name), err_msg=f"{name}: threads")
        joined = np.concatenate([getattr(p, name) for p in parts])
        np.testing.assert_array_equal(v, joined, err_msg=f"{name}: batch split")
        np.testing.assert_array_equal(v[perm], getattr(shuffled, name), err_msg=f"{name}: order")


def test_isa_variants_agree():
    from mixscore.backends.cpu import _core

    r = rng(1)
    X = r.standard_normal((1000, 40)).astype(np.float32)
    x = r.standard_normal((50, 40)).astype(np.float32)
    model = ms.EmpiricalScore(X, ms.VP())
    best = _core.isa()
    results = {}
    try:
        for isa in ["generic", "avx2", "avx512"]:
            if _core.set_isa(isa):
                results[isa] = model.stats(x, 0.2)
    finally:
        _core.set_isa(best)
    assert "generic" in results
    base = results["generic"]
    for st in results.values():
        np.testing.assert_allclose(st.denoised, base.denoised, atol=1e-6)
        np.testing.assert_allclose(st.logpdf, base.logpdf, rtol=1e-9)


@pytest.mark.parametrize("d", [1, 2, 3, 5, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_do_not_depend_on_what_else_is_requested(d, dtype):
    """The engine leaves out work for statistics nobody asked for; the others keep their bits."""
    r = rng(d)
    X = r.standard_normal((1500, d)).astype(dtype)
    x = (X[r.integers(0, 1500, 200)] + 0.3 * r.standard_normal((200, d))).astype(dtype)
    model = ms.EmpiricalScore(X, ms.VP())
    for t in [1e-3, 0.1, 0.6]:
        full = model.stats(x, t)
        for name, v in _all(full).items():
            alone = getattr(model.stats(x, t, include=(name,)), name)
            np.testing.assert_array_equal(alone, v, err_msg=f"{name} at t={t}")
        np.testing.assert_array_equal(model.denoise(x, t), full.denoised)
