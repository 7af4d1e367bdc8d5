"""Partial states and their merge (issue 10): the statistics of a training set split into shards
(uneven sizes, shards of one point, empty shards), merged, equal the single-call statistics."""

import copy
import pickle

import mixscore as ms
import numpy as np
import pytest
from conftest import rng, sigma_schedule

STATS = ("logpdf", "denoised", "score", "eps", "tau2", "max_weight", "n_eff")


def split_points(n, shards, seed):
    """Cut points of [0, n) into `shards` parts: uneven, with a one-point and an empty part
    whenever there are enough shards."""
    if shards == 1:
        return [0, n]
    r = rng(seed)
    inner = sorted(r.choice(np.arange(1, n), size=shards - 1, replace=False).tolist())
    cuts = [0, *inner, n]
    if shards >= 3:
        cuts[1] = 1  # a shard of one point
        cuts[2] = max(cuts[2], 2)
    if shards >= 7:
        cuts[4] = cuts[3]  # an empty shard
    return sorted(cuts)


def shard_models(X, w, cuts, dtype, backend):
    sde = sigma_schedule()
    return [ms.EmpiricalScore(X[a:b], sde, None if w is None else w[a:b], backend=backend,
                              dtype=dtype, row_offset=a)
            for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def assert_close(got, want, rtol, atol, what, dim=1):
    """Within rtol, or atol times the quantity's natural scale: the largest value of a vector
    output, and D (the squared norm of unit-scale data) for tau2, which is 0 up to rounding
    when one point carries all the weight."""
    for name in STATS:
        g, e = np.asarray(got[name], np.float64), np.asarray(want[name], np.float64)
        scale = {"denoised": np.abs(e).max(), "score": np.abs(e).max(), "eps": np.abs(e).max(),
                 "tau2": dim}.get(name, 1.0)
        tol = atol * scale
        np.testing.assert_allclose(g, e, rtol=rtol, atol=tol, err_msg=f"{what}: {name}")
    np.testing.assert_array_equal(got["argmax"], want["argmax"], err_msg=f"{what}: argmax")


@pytest.mark.parametrize("d", [2, 64, 784])
@pytest.mark.parametrize("shards", [1, 2, 3, 7])
@pytest.mark.parametrize("weighted", [False, True])
def test_merged_shards_equal_single_call_float64(backend, d, shards, weighted):
    n = 300 if d < 784 else 120
    X = rng(d).standard_normal((n, d))
    w = rng(1).uniform(0.2, 3.0, n) if weighted else None
    whole = ms.EmpiricalScore(X, sigma_schedule(), w, backend=backend)
    cuts = split_points(n, shards, seed=shards + d)
    models = shard_models(X, w, cuts, np.float64, backend)
    scale = np.sqrt(d)
    for sigma in (1e-3 * scale, 0.05 * scale, 0.3 * scale, 30 * scale):
        x = X[rng(2).integers(0, n, 6)] + sigma * rng(3).standard_normal((6, d))
        merged = ms.merge([m.partial(x, sigma) for m in models]).finalize()
        assert_close(merged, whole.stats(x, sigma).as_dict(), 1e-12, 1e-12,
                     f"{shards} shards, sigma {sigma:g}", dim=d)


@pytest.mark.parametrize("d", [2, 64])
@pytest.mark.parametrize("shards", [2, 7])
def test_merged_shards_equal_single_call_float32(d, shards):
    """float32 engine: with every logit refined (refine='all') the merged outputs equal the
    single call to float32 rounding; with refine='auto' the GEMM-expansion logits depend on each
    shard's centring and tiles, so both agree with the float64 reference to the engine's
    accuracy, not to each other's last bits."""
    n = 400
    X = rng(d).standard_normal((n, d)).astype(np.float32)
    w = rng(1).uniform(0.2, 3.0, n)
    cuts = split_points(n, shards, seed=d)
    ref = ms.EmpiricalScore(X.astype(np.float64), sigma_schedule(), w, backend="numpy")
    for refine in ("all", "auto"):
        whole = ms.EmpiricalScore(X, sigma_schedule(), w, refine=refine)
        models = [ms.EmpiricalScore(X[a:b], sigma_schedule(), w[a:b], refine=refine,
                                    row_offset=a) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        for sigma in (1e-2, 0.3 * np.sqrt(d), 10.0 * np.sqrt(d)):
            x = X[rng(2).integers(0, n, 8)] + np.float32(sigma) * rng(3).standard_normal(
                (8, d)).astype(np.float32)
            merged = ms.merge([m.partial(x, sigma) for m in models]).finalize()
            if refine == "all":
                assert_close(merged, whole.stats(x, sigma).as_dict(), 1e-6, 1e-6,
                             f"sigma {sigma:g}", dim=d)
            else:
                want = ref.stats(x, sigma).as_dict()
                assert_close(merged, want, 1e-4, 1e-5, f"sigma {sigma:g}", dim=d)
                assert_close(whole.stats(x, sigma).as_dict(), want, 1e-4, 1e-5,
                             f"sigma {sigma:g}", dim=d)


def test_merge_matches_the_numpy_reference_and_repeats_bit_for_bit():
    X = rng(5).standard_normal((257, 64))
    ref = ms.EmpiricalScore(X, sigma_schedule(), backend="numpy")
    models = shard_models(X, None, split_points(257, 3, seed=0), np.float64, "auto")
    x = X[:5] + 0.2
    parts = [m.partial(x, 0.4) for m in models]
    first = ms.merge(parts).finalize()
    assert_close(first, ref.stats(x, 0.4).as_dict(), 1e-12, 1e-12, "vs reference", dim=64)
    again = ms.merge([m.partial(x, 0.4) for m in models]).finalize()
    for name, v in first.items():
        np.testing.assert_array_equal(v, again[name], err_msg=name)


def test_single_shard_partial_finalizes_to_stats(backend):
    X = rng(0).standard_normal((50, 5))
    model = ms.EmpiricalScore(X, ms.VP(), backend=backend)
    x = X[:4] + 0.1
    got = model.partial(x, 0.3).finalize()
    assert_close(got, model.stats(x, 0.3).as_dict(), 1e-13, 1e-13, "one shard")


def test_argmax_ties_go_to_the_lowest_global_index():
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    x = np.array([[0.0, 0.5], [0.9, 0.0]])  # equidistant from all; nearest to rows 0 and 2
    whole = ms.EmpiricalScore(X, sigma_schedule()).stats(x, 0.5)
    for order in ([0, 1, 2, 3], [3, 2, 1, 0]):
        models = shard_models(X, None, [0, 1, 2, 3, 4], np.float64, "auto")
        merged = ms.merge([models[j].partial(x, 0.5) for j in order]).finalize()
        np.testing.assert_array_equal(merged["argmax"], [0, 0])
        np.testing.assert_array_equal(merged["argmax"], whole.argmax)


def test_empty_shard_is_the_identity_and_alone_cannot_finalize():
    X = rng(0).standard_normal((20, 3))
    x = X[:3]
    full = ms.EmpiricalScore(X, ms.VP()).partial(x, 0.2)
    empty = ms.EmpiricalScore(np.zeros((0, 3)), ms.VP(), row_offset=20).partial(x, 0.2)
    for parts in ([empty, full], [full, empty]):
        merged = ms.merge(parts)
        assert merged.n == 20
        for name, v in full.finalize().items():
            np.testing.assert_array_equal(merged.finalize()[name], v, err_msg=name)
    with pytest.raises(ValueError, match="without training points"):
        empty.finalize()


@pytest.mark.parametrize("d", [2, 64])
@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_merged_nearest_equals_single_call_bit_for_bit(backend, d, shards):
    X = rng(d).integers(0, 8, size=(200, d)).astype(np.float32)  # many exact ties
    q = np.concatenate([X[:5], X[10:15] + 0.5]).astype(np.float32)
    cuts = split_points(200, shards, seed=d)
    k = 4
    whole = ms.nearest(q, X, k=k, backend=backend)
    parts = [ms.NearestIndex(X[a:b], backend=backend, row_offset=a).partial(q, k)
             for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    merged = ms.merge(parts).finalize()
    np.testing.assert_array_equal(merged.indices, whole.indices)
    np.testing.assert_array_equal(merged.distances, whole.distances)


def test_merge_bad_input():
    X = rng(0).standard_normal((20, 3))
    model = ms.EmpiricalScore(X, ms.VP())
    x = X[:3] + 0.1
    p = model.partial(x, 0.2)
    with pytest.raises(ValueError, match="empty sequence"):
        ms.merge([])
    with pytest.raises(TypeError, match="PosteriorPartial or NeighborsPartial"):
        ms.merge([p, {"s0": 1}])
    with pytest.raises(ValueError, match="different queries"):
        ms.merge([p, model.partial(x + 1.0, 0.2)])
    with pytest.raises(ValueError, match="queries of shape"):
        ms.merge([p, model.partial(x[:2], 0.2)])
    with pytest.raises(ValueError, match="different sigma2|different alpha"):
        ms.merge([p, model.partial(x, 0.3)])
    with pytest.raises(ValueError, match="queries of shape"):
        ms.merge([p, ms.EmpiricalScore(rng(1).standard_normal((5, 4)), ms.VP()).partial(
            np.zeros((3, 4)), 0.2)])
    with pytest.raises(ValueError, match="float32.*float64|float64.*float32"):
        ms.merge([p, ms.EmpiricalScore(X.astype(np.float32), ms.VP()).partial(x, 0.2)])
    nn = ms.NearestIndex(X).partial(x, 2)
    with pytest.raises(TypeError, match="one kind"):
        ms.merge([p, nn])
    with pytest.raises(ValueError, match="k = 2 and k = 3"):
        ms.merge([nn, ms.NearestIndex(X).partial(x, 3)])
    with pytest.raises(ValueError, match="row_offset must be >= 0"):
        ms.EmpiricalScore(X, ms.VP(), row_offset=-1)
    with pytest.raises(TypeError, match="row_offset must be an integer"):
        ms.NearestIndex(X, row_offset=1.5)


def test_models_pickle_and_copy(backend):
    X = rng(0).standard_normal((40, 16)).astype(np.float32)
    model = ms.EmpiricalScore(X, ms.VP(), rng(1).uniform(1, 2, 40), backend=backend,
                              row_offset=7)
    x = X[:3] + 0.05
    want = model.stats(x, 0.1).as_dict()
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model), copy.copy(model)):
        assert clone.backend.name == model.backend.name and clone.row_offset == 7
        got = clone.stats(x, 0.1).as_dict()
        for name, v in want.items():
            np.testing.assert_array_equal(got[name], v, err_msg=name)
    index = ms.NearestIndex(X, backend=backend, row_offset=3)
    clone = pickle.loads(pickle.dumps(index))
    assert clone.row_offset == 3
    for a, b in zip(clone.search(x, 3), index.search(x, 3), strict=True):
        np.testing.assert_array_equal(a, b)


def _shard_partial(args):
    model, x, t = args
    return model.partial(x, t)


def test_partials_from_worker_processes():
    """Models travel to other processes (pickled) and their partials come back and merge."""
    import concurrent.futures
    import multiprocessing

    X = rng(0).standard_normal((90, 8))
    x = X[:4] + 0.1
    models = shard_models(X, None, [0, 30, 31, 90], np.float64, "auto")
    ctx = multiprocessing.get_context("spawn")  # fork after OpenMP may hang (issue 17)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        parts = list(pool.map(_shard_partial, [(m, x, 0.3) for m in models]))
    local = ms.merge([m.partial(x, 0.3) for m in models]).finalize()
    for name, v in ms.merge(parts).finalize().items():
        np.testing.assert_array_equal(v, local[name], err_msg=name)


def test_reference_finalize_does_not_overflow(backend):
    """The oracle is at least as robust as the engine (issue 18, item 5): log(2 pi sigma^2) at
    sigma^2 = 1.7e308 and a weight sum beyond the float64 range stay finite."""
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    x = np.array([[0.3, 0.2]])
    huge = ms.EmpiricalScore(X, ms.Brownian(), backend=backend).stats_at_noise(x, 1.0, 1.7e308)
    # p = N(x; ~0, sigma^2 I) for all points: log p = -(D/2) log(2 pi sigma^2) - tiny
    np.testing.assert_allclose(huge.logpdf, -(np.log(2 * np.pi) + np.log(1.7e308)), rtol=1e-12)
    equal = ms.EmpiricalScore(X, ms.VP(), backend=backend).logpdf(x, 0.3)
    heavy = ms.EmpiricalScore(X, ms.VP(), np.full(3, 1e308), backend=backend).logpdf(x, 0.3)
    np.testing.assert_allclose(heavy, equal, rtol=1e-12)  # only relative weights matter


def test_index_from_model_shares_the_preparation_and_equals_a_fresh_index(backend):
    X = rng(0).standard_normal((300, 20)).astype(np.float32)
    model = ms.EmpiricalScore(X, ms.VP(), rng(1).uniform(1, 2, 300), backend=backend)
    index = ms.NearestIndex.from_model(model)
    if backend == "cpu":
        assert index._last.prepared is model.backend.prepared  # one preparation, not two
    q = X[:7] + 0.01
    for a, b in zip(index.search(q, 3), ms.NearestIndex(X, backend=backend).search(q, 3),
                    strict=True):
        np.testing.assert_array_equal(a, b)  # the model's weights do not enter the search
    rep = ms.memorization(q, index)
    ref = ms.memorization(q, X)
    np.testing.assert_array_equal(rep.distances, ref.distances)
    np.testing.assert_array_equal(rep.indices, ref.indices)
