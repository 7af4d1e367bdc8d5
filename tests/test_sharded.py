"""Training sets sharded over a Dask cluster (issue 15): the statistics, nearest neighbours and
samples equal the single-process ones; the same chunk layout gives the same bits; a killed
worker is recomputed, never a wrong answer."""

import concurrent.futures
import os
import pickle
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import mixscore as ms
import numpy as np
import pytest
from conftest import rng, sigma_schedule
from mixscore.sharded import is_sharded, tree_merge
from test_partial import assert_close

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

LAYOUTS = {
    "one shard": (300,),
    "uneven, size 1 and empty": (100, 1, 0, 99, 100),
    "20 shards (two merge levels)": (15,) * 20,
}


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def local_tree(X, w, chunks, x, t):
    """The same shards and tree merge, in this process, one after the other."""
    cuts = np.concatenate([[0], np.cumsum(chunks)]).astype(int)
    parts = [
        ms.EmpiricalScore(
            X[a:b], sigma_schedule(), None if w is None else w[a:b], row_offset=a
        ).partial(x, t)
        for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    return tree_merge(parts).finalize()


def test_spawned_workers():
    """Workers are spawned, not forked after OpenMP ran (issue 17)."""
    import dask

    assert dask.config.get("distributed.worker.multiprocessing-method") == "spawn"


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("weighted", [False, True])
def test_sharded_stats_equal_single_process_float64(client, layout, weighted):
    d, chunks = 16, LAYOUTS[layout]
    X = rng(d).standard_normal((300, d))
    w = rng(1).uniform(0.2, 3.0, 300) if weighted else None
    model = ms.EmpiricalScore(da.from_array(X, chunks=(chunks, (8, 8))), sigma_schedule(), w)
    assert model.backend.name == "dask" and model.n == 300 and model.dim == d
    whole = ms.EmpiricalScore(X, sigma_schedule(), w)
    for sigma in (1e-3, 0.3, 4.0, 100.0):
        x = X[rng(2).integers(0, 300, 6)] + sigma * rng(3).standard_normal((6, d))
        got = model.stats(x, sigma).as_dict()
        assert_close(got, whole.stats(x, sigma).as_dict(), 1e-12, 1e-12, f"sigma {sigma}", d)
        local = local_tree(X, w, chunks, x, sigma)  # one process: the same bits
        for name, v in local.items():
            np.testing.assert_array_equal(got[name], v, err_msg=f"{name}, sigma {sigma}")


def test_sharded_labels_equal_single_process(client):
    """Conditional statistics (labels=, y=) on a sharded set: each label's points form their
    own sharded model; the same numbers and global argmax as one process."""
    d = 8
    X = rng(d).standard_normal((200, d))
    w = rng(1).uniform(0.5, 2.0, 200)
    labels = rng(4).integers(0, 3, 200)
    model = ms.EmpiricalScore(da.from_array(X, chunks=((70, 1, 0, 129), (d,))),
                              sigma_schedule(), w, labels=labels)
    whole = ms.EmpiricalScore(X, sigma_schedule(), w, labels=labels)
    x = X[:6] + 0.05
    y = np.array([0, 1, 2, 2, 1, 0])
    for sigma in (0.01, 0.5):
        got = model.stats(x, sigma, y=y).as_dict()
        want = whole.stats(x, sigma, y=y).as_dict()
        assert_close(got, want, 1e-12, 1e-12, f"sigma {sigma}", d)
        assert np.all(labels[got["argmax"]] == y)


def test_each_shard_model_lives_on_one_worker_and_is_not_copied(client):
    """A worker holds only its shards: the models are spread evenly and stay where they were
    prepared across calls. The scheduler knows their size (about 13 MB each here), so moving
    one to run a task elsewhere never pays; it would think them a few hundred bytes otherwise.
    (Dask may still copy a small shard to balance load.)"""
    X = da.random.default_rng(12).standard_normal((200_000, 32), chunks=25_000)  # on workers
    model = ms.EmpiricalScore(X, sigma_schedule())
    for j in range(6):
        model.stats(X[j * 10 : j * 10 + 16].compute() + 0.1, 0.3)
    who = client.who_has(distributed.futures_of(model.backend.shards.models))
    homes = [tuple(w) for w in who.values()]
    assert all(len(h) == 1 for h in homes), homes
    assert sorted(homes.count(h) for h in set(homes)) == [4, 4]


def test_sharded_model_without_a_distributed_client():
    """With distributed installed but no Client (a fresh interpreter: the other tests' client
    would be the default), Dask's local threads build and run the shards."""
    code = (
        "import numpy as np, dask.array as da, mixscore as ms\n"
        "X = np.random.default_rng(0).standard_normal((100, 2))\n"
        "m = ms.EmpiricalScore(da.from_array(X, chunks=(50, 2)), ms.VP())\n"
        "want = ms.EmpiricalScore(X, ms.VP()).stats(X[:3] + 0.1, 0.3).logpdf\n"
        "assert np.allclose(m.stats(X[:3] + 0.1, 0.3).logpdf, want, rtol=1e-12)\n"
        "assert (ms.nearest(X[:3], da.from_array(X, chunks=(50, 2)), k=2).indices[:, 0]\n"
        "        == [0, 1, 2]).all()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_local_dask_scheduler_gives_the_same_bits():
    """Without a distributed cluster (Dask's threads) the same layout gives the same bits."""
    import dask

    X = rng(14).standard_normal((90, 6))
    chunks = (30, 1, 0, 59)
    x = X[:4] + 0.1
    with dask.config.set(scheduler="threads"):
        got = ms.EmpiricalScore(da.from_array(X, chunks=(chunks, 6)), sigma_schedule())
        got = got.stats(x, 0.2).as_dict()
    for name, v in local_tree(X, None, chunks, x, 0.2).items():
        np.testing.assert_array_equal(got[name], v, err_msg=name)


def test_sharded_float32_within_1e6(client):
    d, chunks = 8, (50, 1, 0, 149)
    X = rng(4).standard_normal((200, d)).astype(np.float32)
    w = rng(5).uniform(0.5, 2.0, 200)
    model = ms.EmpiricalScore(
        da.from_array(X, chunks=(chunks, d)), sigma_schedule(), w, refine="all"
    )
    whole = ms.EmpiricalScore(X, sigma_schedule(), w, refine="all")
    x = X[:7] + np.float32(0.1)
    for sigma in (1e-2, 0.5, 20.0):
        got = model.stats(x, sigma).as_dict()
        assert got["denoised"].dtype == np.float32
        assert_close(got, whole.stats(x, sigma).as_dict(), 1e-6, 1e-6, f"sigma {sigma}", d)


def test_partial_of_sharded_model_merges_with_other_parts(client):
    """A sharded model's partial is the merged partial of its shards (global indices), so it
    merges with a partial of further training points."""
    X = rng(6).standard_normal((120, 5))
    x = X[[3, 100]] + 0.05
    part = ms.EmpiricalScore(da.from_array(X[:80], chunks=30), sigma_schedule()).partial(x, 0.2)
    rest = ms.EmpiricalScore(X[80:], sigma_schedule(), row_offset=80).partial(x, 0.2)
    want = ms.EmpiricalScore(X, sigma_schedule()).stats(x, 0.2).as_dict()
    assert_close(ms.merge([part, rest]).finalize(), want, 1e-12, 1e-12, "partial", 5)
    assert list(want["argmax"]) == [3, 100]


def test_sharded_models_pickle(client):
    """A sharded model or index pickles as its Dask array and options, and is prepared again
    on unpickling (on the current client)."""
    X = rng(16).standard_normal((120, 4))
    x = X[:3] + 0.1
    model = ms.EmpiricalScore(da.from_array(X, chunks=40), sigma_schedule())
    index = ms.NearestIndex(da.from_array(X, chunks=40))
    clone = pickle.loads(pickle.dumps(model))
    assert clone.backend.name == "dask" and clone.backend is not model.backend
    np.testing.assert_array_equal(clone.denoise(x, 0.2), model.denoise(x, 0.2))
    iclone = pickle.loads(pickle.dumps(index))
    assert iclone.shards is not index.shards
    for a, b in zip(iclone.search(x, 2), index.search(x, 2), strict=True):
        np.testing.assert_array_equal(a, b)


def test_list_of_arrays_and_npy_paths(client, tmp_path):
    X = rng(7).standard_normal((90, 4))
    cuts = [0, 1, 1, 40, 90]  # a one-point shard and an empty one
    paths = []
    for j, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        np.save(tmp_path / f"shard{j}.npy", X[a:b])
        paths.append(tmp_path / f"shard{j}.npy")
    x = X[:5] + 0.2
    want = ms.EmpiricalScore(X, sigma_schedule()).stats(x, 0.3).as_dict()
    for train in (
        [X[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)],
        paths,
        [str(p) for p in paths],
    ):
        model = ms.EmpiricalScore(train, sigma_schedule())
        assert model.n == 90
        assert_close(model.stats(x, 0.3).as_dict(), want, 1e-12, 1e-12, "list", 4)
    near = ms.nearest(x, paths, k=3)
    whole = ms.nearest(x, X, k=3)
    np.testing.assert_array_equal(near.indices, whole.indices)
    np.testing.assert_array_equal(near.distances, whole.distances)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sharded_nearest_bit_for_bit(client, dtype):
    X = rng(8).integers(0, 6, size=(200, 8)).astype(dtype)  # many exact ties
    q = np.concatenate([X[:6], X[50:56] + 0.5]).astype(dtype)
    Xd = da.from_array(X, chunks=((60, 1, 0, 39, 100), 8))
    index = ms.NearestIndex(Xd)
    assert isinstance(index, ms.NearestIndex) and index.n == 200
    for k in (1, 4):
        whole = ms.nearest(q, X, k=k)
        for got in (index.search(q, k), ms.nearest(q, Xd, k=k)):
            np.testing.assert_array_equal(got.indices, whole.indices)
            np.testing.assert_array_equal(got.distances, whole.distances)
    np.testing.assert_array_equal(index.search(X[:3], 1).distances, np.zeros((3, 1)))


@pytest.mark.parametrize("sampler, extra", [("ddpm", {}), ("ddim", {}), ("naive", {"R": 3}),
                                            ("effective", {"kappa": 0.5})])
def test_sampler_on_sharded_set_gives_the_same_samples(client, sampler, extra):
    """Also the posterior samplers: the naive one gathers only its drawn rows from the shards."""
    X = rng(9).standard_normal((60, 3))
    w = rng(10).uniform(0.5, 2.0, 60)
    sch = ms.VP()
    model = ms.EmpiricalScore(da.from_array(X, chunks=((20, 1, 0, 39), 3)), sch, w)
    kw = dict(n=10, sampler=sampler, steps=8, start="exact", seed=5, end="denoised", **extra)
    got = ms.sample(model, **kw)
    want = ms.sample(ms.EmpiricalScore(X, sch, w), **kw)  # the fused C++ loop where it runs
    assert got.settings["fused"] is False
    np.testing.assert_array_equal(got.start_index, want.start_index)
    np.testing.assert_allclose(got.samples, want.samples, rtol=1e-10, atol=1e-12)


def test_exact_start_reads_only_the_drawn_rows(client, tmp_path):
    """start="exact" fetches the drawn training rows, not the whole set: a shard file that no
    start draws from may be gone once the shard models are built."""
    X = rng(15).standard_normal((40, 3))
    w = np.where(np.arange(40) >= 30, 1e-12, 1.0)  # rows 30..39 are never drawn
    paths = [tmp_path / "a.npy", tmp_path / "b.npy"]
    np.save(paths[0], X[:30])
    np.save(paths[1], X[30:])
    model = ms.EmpiricalScore(paths, ms.VP(), w)
    os.remove(paths[1])  # its shard model lives on a worker already
    kw = dict(n=12, sampler="ddpm", steps=4, start="exact", seed=2)
    got = ms.sample(model, **kw)
    want = ms.sample(ms.EmpiricalScore(X, ms.VP(), w), **kw)
    assert got.start_index.max() < 30
    np.testing.assert_array_equal(got.start_index, want.start_index)
    np.testing.assert_allclose(got.samples, want.samples, rtol=1e-10, atol=1e-12)


def test_killed_worker_is_recomputed_not_wrong(client):
    """SIGKILL a worker while the shards' partials are being computed: Dask recomputes the
    lost shard models from the graph and the answer is the exact one."""
    X = rng(11).standard_normal((6000, 32))
    x = X[:48] + 0.3
    model = ms.EmpiricalScore(
        da.from_array(X, chunks=(1500, 32)), sigma_schedule(), backend="numpy"
    )  # the slow reference: about a second a call
    want = ms.EmpiricalScore(X, sigma_schedule()).stats(x, 0.5).as_dict()
    got = kill_during_call(client, model, x, 0.5).result().as_dict()
    assert_close(got, want, 1e-12, 1e-12, "after a killed worker", 32)
    assert_close(model.stats(x, 0.5).as_dict(), want, 1e-12, 1e-12, "next call", 32)


def stats_with(client, model, x, t):
    with client.as_current():  # (a thread does not inherit the caller's current client)
        return model.stats(x, t)


def kill_during_call(client, model, x, t):
    """Start model.stats(x, t), SIGKILL a worker while a shard task runs on it, return the
    finished call (a concurrent.futures.Future)."""
    pids = client.run(os.getpid)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(stats_with, client, model, x, t)
        busy, deadline = [], time.monotonic() + 20
        while not busy and time.monotonic() < deadline and not pending.done():
            busy = [
                w
                for w, keys in client.processing().items()
                if any("score_partial" in str(k) for k in keys)
            ]
            time.sleep(0.01)
        assert busy, "no shard task was seen running"
        os.kill(pids[busy[0]], signal.SIGKILL)
        concurrent.futures.wait([pending], timeout=120)
    return pending


def test_killed_worker_when_dask_gives_up_is_an_error_not_an_answer():
    """With no retries allowed (allowed-failures = 0) the call raises Dask's KilledWorker,
    which names the task and the dead worker; it never returns partial statistics. (Should
    the kill land after the task finished, the lost models are recomputed: then the answer
    must be exact.)"""
    import dask

    X = rng(13).standard_normal((4000, 32))
    x = X[:48] + 0.3
    want = ms.EmpiricalScore(X, sigma_schedule()).stats(x, 0.5).as_dict()
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as c,
        c.as_current(),
    ):
        model = ms.EmpiricalScore(
            da.from_array(X, chunks=(1000, 32)), sigma_schedule(), backend="numpy"
        )
        done = kill_during_call(c, model, x, 0.5)
        if done.exception() is None:
            assert_close(done.result().as_dict(), want, 1e-12, 1e-12, "not killed in time", 32)
        else:
            with pytest.raises(distributed.KilledWorker, match="died"):
                done.result()


def test_bad_sharded_input(client, tmp_path):
    X = rng(0).standard_normal((10, 3))
    with pytest.raises(ValueError, match=r"train\[1\] has 2 columns, train\[0\] has 3"):
        ms.EmpiricalScore([X, X[:, :2]], ms.VP())
    with pytest.raises(ValueError, match=r"list of shards .* item 1 is an array of shape \(3,\)"):
        ms.EmpiricalScore([X[:5], X[5]], ms.VP())
    with pytest.raises(ValueError, match=r"train\[1\]: cannot read .*nope.npy"):
        ms.NearestIndex([X, tmp_path / "nope.npy"])
    bad = X.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"shard 1 \(global rows 5\.\.9\).*NaN"):
        ms.EmpiricalScore(da.from_array(bad, chunks=5), ms.VP())
    with pytest.raises(ValueError, match="weights must have shape"):
        ms.EmpiricalScore(da.from_array(X, chunks=5), ms.VP(), np.ones(9))
    with pytest.raises(ValueError, match="must be 2-d"):
        ms.EmpiricalScore(da.zeros((4, 2, 2)), ms.VP())
    with pytest.raises(ValueError, match="k must satisfy 1 <= k <= N = 10"):
        ms.nearest(X[:2], da.from_array(X, chunks=5), k=11)
    with pytest.raises(ValueError, match=r"queries must have shape \(M, 3\)"):
        ms.nearest(X[:2, :2], da.from_array(X, chunks=5))


def test_plain_lists_are_not_shards_and_mixscore_imports_without_dask():
    rows = [[0.0, 1.0], [1.0, 0.0]]
    assert not is_sharded(rows) and not is_sharded(np.zeros((2, 2)))
    assert is_sharded([np.zeros((2, 2))]) and is_sharded(["a.npy"])
    assert ms.EmpiricalScore(rows, ms.VP()).n == 2
    code = (
        "import sys; sys.modules['dask'] = None; import numpy as np, mixscore as ms\n"
        "print(ms.EmpiricalScore(np.zeros((3, 2)), ms.VP()).n)\n"
        "try:\n    ms.EmpiricalScore([np.zeros((3, 2))], ms.VP())\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()  # (an editable install may print its rebuild first)
    assert lines[-2:] == [
        "3",
        "a sharded training set (a Dask array or a list of shards) "
        'needs Dask: pip install "mixscore[dask]"',
    ]
