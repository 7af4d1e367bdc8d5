"""The one prepared training set (cpp/include/mixscore/prepared.hpp, _core.Prepared_f32/f64):
built once in C++, shared by the statistics, the nearest search and the fused sampler,
picklable, with a global row offset; and the nearest search on the one driver (its small-D box
pruning, its split of the training set) still bit-identical to the NumPy reference."""

import pickle

import mixscore as ms
import numpy as np
import pytest
from conftest import rng
from mixscore.backends.numpy_ref import nearest_reference

pytestmark = pytest.mark.skipif("cpu" not in ms.available_backends(), reason="no C++ engine")


@pytest.fixture
def core():
    from mixscore import _core

    return _core


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_and_pickle(core, dtype):
    X = (rng(0).standard_normal((1500, 20)) * 3 + 7).astype(dtype)
    w = rng(1).uniform(0.5, 2.0, 1500)
    cls = core.Prepared_f32 if dtype == np.float32 else core.Prepared_f64
    p = cls(X, np.log(w))
    assert (p.N, p.D, p.dtype) == (1500, 20, np.dtype(dtype))
    np.testing.assert_allclose(p.mu, X.astype(np.float64).mean(0), rtol=1e-13)
    np.testing.assert_allclose(p.logw_sum, np.log(w.sum()), rtol=1e-13)
    q = pickle.loads(pickle.dumps(p))
    x = (X[:7] + 0.1).astype(dtype)
    opt = core.EngineOptions()
    want = {"denoised", "logpdf", "argmax", "lam_min"}
    a = core.stats(p, x, np.full(7, 0.9), np.full(7, 0.05), want, opt)
    b = core.stats(q, x, np.full(7, 0.9), np.full(7, 0.05), want, opt)
    for k in want:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_one_preparation_shared_by_score_and_nearest():
    from mixscore.backends.cpu import CpuBackend
    from mixscore.backends.nearest_cpu import CpuNearest

    X = rng(2).standard_normal((3000, 64)).astype(np.float32)
    Q = (X[:50] + 0.01).astype(np.float32)
    score = CpuBackend(X, None)
    shared = CpuNearest(X, prepared=score.prepared)
    d, i = shared.search(Q, 3)
    d_ref, i_ref = nearest_reference(Q, X, 3)
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_array_equal(d, d_ref)


def test_row_offset_and_global_n(core):
    X = rng(3).standard_normal((900, 5))
    x = X[[3, 400]] + 1e-3
    p = core.Prepared_f64(X, None, row_offset=1000, global_n=5000)
    assert (p.row_offset, p.global_n) == (1000, 5000)
    np.testing.assert_allclose(p.logw_sum, np.log(5000.0), rtol=1e-15)
    opt = core.EngineOptions()
    st = core.stats(p, x, np.ones(2), np.full(2, 1e-4), {"argmax"}, opt)
    np.testing.assert_array_equal(st["argmax"], [1003, 1400])
    _, idx, _ = core.nearest(p, x, 2, opt)
    np.testing.assert_array_equal(idx[:, 0], [1003, 1400])


def test_bad_input_names_the_argument(core):
    X = rng(4).standard_normal((50, 3)).astype(np.float32)
    p = core.Prepared_f32(X)
    opt = core.EngineOptions()
    with pytest.raises(ValueError, match="x: expected a float32 array.*float64"):
        core.stats(p, X.astype(np.float64), np.ones(50), np.ones(50), {"logpdf"}, opt)
    with pytest.raises(ValueError, match="x: expected a 2-d array with 3 columns"):
        core.nearest(p, X[:, :2], 1, opt)
    with pytest.raises(ValueError, match="k must satisfy 1 <= k <= N = 50, got 51"):
        core.nearest(p, X, 51, opt)
    with pytest.raises(ValueError, match="X: expected a float32 array, got dtype float64"):
        core.Prepared_f32(X.astype(np.float64))
    with pytest.raises(ValueError, match="logw: expected a 1-d array of length 50"):
        core.Prepared_f32(X, np.zeros(49))
    with pytest.raises(ValueError, match="global_n must be 0 or at least N = 50, got 10"):
        core.Prepared_f32(X, global_n=10)


@pytest.mark.parametrize("d", [2, 7, 15])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_small_d_nearest_pruned_and_split_match_reference(d, threads):
    """Far clusters (most tiles left out by their boxes), few queries (the training set split
    over threads and the partial top-k merged): the same bits as the reference."""
    g = rng(d)
    centres = 20.0 * g.standard_normal((12, d))
    X = np.concatenate([c + g.standard_normal((500, d)) for c in centres]).astype(np.float32)
    X[4000] = X[17]  # an exact duplicate: a tie broken by the lower index
    Q = np.concatenate([X[[17, 2500]], X[g.integers(0, len(X), 40)] + 0.3]).astype(np.float32)
    got = ms.nearest(Q, X, k=3, num_threads=threads)
    d_ref, i_ref = nearest_reference(Q, X, 3)
    np.testing.assert_array_equal(got.indices, i_ref)
    np.testing.assert_array_equal(got.distances, d_ref)
    assert list(got.indices[0, :2]) == [17, 4000]
