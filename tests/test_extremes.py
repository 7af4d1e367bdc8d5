"""Numeric extremes of issue 17 that the Python layer decides."""

import mixscore as ms
import numpy as np
import pytest
from conftest import reference, rng


@pytest.mark.parametrize("schedule", [ms.EDM(), ms.VE(), ms.Brownian(),
                                      ms.VE.memorization_paper()])
def test_schedules_defined_beyond_T_accept_later_times(backend, schedule):
    """k-diffusion's stochastic EDM sampler (s_churn) evaluates above sigma_max: the mixture is
    defined there, so the score is too."""
    X = rng(0).standard_normal((30, 3))
    model = ms.EmpiricalScore(X, schedule, backend=backend)
    t = schedule.T * (1 + 1e-9) + 0.5
    x = X[:4] * 2.0
    got = model.stats(x, t)
    want = reference(X, schedule).stats_at_noise(x, schedule.alpha(t), schedule.sigma2(t))
    np.testing.assert_allclose(got.denoised, want.denoised, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.logpdf, want.logpdf, rtol=1e-12)


@pytest.mark.parametrize("schedule", [ms.VP(), ms.OU(), ms.Cosine()])
def test_schedules_with_a_horizon_refuse_later_times(schedule):
    model = ms.EmpiricalScore(rng(0).standard_normal((5, 2)), schedule)
    with pytest.raises(ValueError, match=r"t must lie in \(0, T\]"):
        model.denoise(np.zeros(2), schedule.T * 1.001)
    assert schedule.t_max == schedule.T


def test_times_must_be_positive_and_finite_beyond_T():
    model = ms.EmpiricalScore(rng(0).standard_normal((5, 2)), ms.EDM())
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="t must be finite and > 0"):
            model.denoise(np.zeros(2), bad)


def test_tiny_float32_data_nearest_is_exact(backend):
    """float32 products of values near 1e-23 underflow; the search then runs in float64."""
    X = np.array([[0.0], [1e-23], [2e-23]], np.float32)
    nb = ms.nearest(X, X, k=1, backend=backend)
    np.testing.assert_array_equal(nb.indices[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(nb.distances[:, 0], 0.0)
    Y = (rng(0).standard_normal((50, 64)) * 1e-25).astype(np.float32)
    nb = ms.nearest(Y[:10], Y, k=1, backend=backend)
    np.testing.assert_array_equal(nb.indices[:, 0], np.arange(10))
    np.testing.assert_array_equal(nb.distances[:, 0], 0.0)


def test_tiny_data_score(backend):
    """float64 handles a spread of 1e-25 like any other (matches the reference after
    rescaling); float32 refuses it clearly instead of returning a wrong argmax."""
    Y = rng(0).standard_normal((40, 64)) * 1e-25
    sde = ms.Brownian()
    model = ms.EmpiricalScore(Y, sde, backend=backend)
    scaled = ms.EmpiricalScore(Y * 1e25, sde, backend="numpy")
    x = Y[:3] + 1e-27
    got = model.stats_at_noise(x, 1.0, 1e-52)
    want = scaled.stats_at_noise(x * 1e25, 1.0, 1e-2)
    np.testing.assert_array_equal(got.argmax, want.argmax)
    np.testing.assert_allclose(got.denoised * 1e25, want.denoised, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="varies by at most.*dtype=np.float64"):
        ms.EmpiricalScore(Y.astype(np.float32), sde, backend=backend)


@pytest.mark.parametrize("dtype,value", [(np.float32, 5e18), (np.float64, 1e154)])
def test_huge_values_are_refused(backend, dtype, value):
    X = rng(0).standard_normal((10, 64)).astype(dtype)
    with pytest.raises(ValueError, match="train has values up to.*overflow"):
        ms.EmpiricalScore(X * dtype(value), ms.VE(), backend=backend)
    model = ms.EmpiricalScore(X, ms.VE(), backend=backend)
    with pytest.raises(ValueError, match="x has values up to.*overflow"):
        model.denoise(X[:2] * dtype(value), 0.5)


def _fork_worker(args):
    model, index, x = args
    return model.denoise(x, 0.3), index.search(x, 3).indices


@pytest.mark.skipif("cpu" not in ms.available_backends(), reason="no C++ engine")
def test_fork_pool_after_the_engine_ran_in_the_parent():
    """A child forked after OpenMP started (multiprocessing's default on Linux, DataLoader
    workers) must not wait forever for the parent's thread pool (issue 17 item 2)."""
    import multiprocessing

    X = rng(0).standard_normal((3000, 64)).astype(np.float32)
    model = ms.EmpiricalScore(X, ms.VP())
    index = ms.NearestIndex(X)
    x = X[:300] + 0.1
    want = (model.denoise(x, 0.3), index.search(x, 3).indices)  # the parent's pool is up
    with multiprocessing.get_context("fork").Pool(2) as pool:
        got = pool.map_async(_fork_worker, [(model, index, x)] * 2).get(timeout=120)
    for den, idx in got:
        np.testing.assert_array_equal(den, want[0])
        np.testing.assert_array_equal(idx, want[1])


@pytest.mark.parametrize("bad,exc", [(2.5, TypeError), (-1, ValueError), (2**40, ValueError),
                                     (100000, ValueError)])
def test_num_threads_is_validated(bad, exc):
    X = rng(0).standard_normal((10, 3))
    with pytest.raises(exc, match="num_threads"):
        ms.EmpiricalScore(X, ms.VP(), num_threads=bad)
    with pytest.raises(exc, match="num_threads"):
        ms.NearestIndex(X, num_threads=bad)


@pytest.mark.skipif("cpu" not in ms.available_backends(), reason="no C++ engine")
def test_nearest_with_k_equal_to_n_keeps_memory_order_m_k():
    """k = N for one query: O(M k) memory and O(log k) insertion (was 256 k buffers per thread
    and O(k) insertion: +2.3 GiB and 9 s at N = 300000)."""
    import subprocess
    import sys

    code = (
        "import resource, numpy as np, mixscore as ms\n"
        "X = np.random.default_rng(0).standard_normal((300000, 8)).astype(np.float32)\n"
        "q = X[:1] + 0.01\n"
        "ms.nearest(q, X, k=2)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "nb = ms.nearest(q, X, k=X.shape[0])\n"
        "grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "d2 = ((X.astype(np.float64) - q[0].astype(np.float64)) ** 2).sum(1)\n"
        "assert np.array_equal(nb.indices[0], np.lexsort((np.arange(X.shape[0]), d2)))\n"
        "print(grew)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    grew_kib = int(out.stdout.split()[-1])
    assert grew_kib < 200 * 1024  # the result itself is 4.8 MB; the old buffers were >1 GiB


def test_exact_copies_give_exactly_zero_eps(backend):
    """A query on a training point at tiny sigma: the posterior is that point, so eps and
    denoised - x are exactly 0, with no 1e-300-sized leftovers of earlier running maxima
    (issue 17 item 10: 1017 of 1797 digit rows had them)."""
    X = ms.datasets.digits().astype(np.float64)
    model = ms.EmpiricalScore(X, ms.Brownian(), backend=backend)
    st = model.stats_at_noise(X, 1.0, 1e-6, include=("eps", "denoised"))
    np.testing.assert_array_equal(st.eps, 0.0)
    np.testing.assert_array_equal(st.denoised, X)
