"""A training set sharded over a Dask LocalCluster of two workers (issue 15), from one run.

1. throughput: ``model.stats`` (all statistics) for M queries on a training set both can hold,
   the single-process engine (one process, all cores) against the sharded set on a
   LocalCluster of two one-thread workers (the same cores); the largest deviation between the
   two is printed with it;
2. sampler overhead: ``ms.sample`` (ddpm) on the sharded set against the Python loop and the
   fused C++ loop of one process: the extra time per step is the round trip (queries out,
   partials back, tree merge);
3. beyond one worker: float64 .npy shards on disk, larger than one worker's memory limit
   (spilling off, so the limit is the nanny's: pause at 80%, restart at 95%), computed in
   float32 on the two workers; the build time, a stats call, a few sampler steps and each
   worker's resident memory.

    python bench/dask_compare.py [--d 64] [--n 200000] [--m 512] [--limit-mb 2048]
                                 [--factor 1.1] [--steps 10] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile

import dask
import dask.array as da
import mixscore as ms
import numpy as np
from distributed import Client, LocalCluster
from mixscore import _core
from mixscore.benchmarks import best_of


def timed(fn, repeats=1):
    """Best wall time of ``repeats`` runs, no warm-up (mixscore.benchmarks.best_of)."""
    return best_of(fn, repeats, warmup=False)


def cluster(limit_mb=None):
    kw = {} if limit_mb is None else {"memory_limit": f"{limit_mb}MiB"}
    c = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", **kw
    )
    return c, Client(c)


def worker_rss_mb(client):
    import psutil

    rss = client.run(lambda: psutil.Process().memory_info().rss)
    return [round(v / 2**20) for v in rss.values()]


def throughput(a, X, x, sch):
    single = ms.EmpiricalScore(X, sch)
    single.stats(x, 0.1)  # warm-up
    t1, want = timed(lambda: single.stats(x, 0.1), a.repeats)
    c, client = cluster()
    with c, client:
        model = ms.EmpiricalScore(da.from_array(X, chunks=(a.n // a.shards, a.d)), sch)
        model.stats(x, 0.1)
        t2, got = timed(lambda: model.stats(x, 0.1), a.repeats)
        scale = float(np.abs(X).max())
        dev = float(np.abs(got.denoised - want.denoised).max()) / scale
        same = bool(np.array_equal(got.argmax, want.argmax))
        print(f"\n1. stats, M = {a.m}, N = {a.n}, D = {a.d}, float32, t = 0.1 (VP)")
        print("| engine | s per call | M N / s | vs single |\n|---|---|---|---|")
        for name, t in (("single process (2 threads)", t1), (f"Dask, {a.shards} shards", t2)):
            print(f"| {name} | {t:.3f} | {a.m * a.n / t:.3g} | {t1 / t:.2f}x |")
        print(f"max |denoised diff| / max|X| = {dev:.2g}, identical argmax: {same}")
        if "2" in a.parts:
            sampler_overhead(a, X, single, model)


def sampler_overhead(a, X, single, model):
    kw = dict(sampler="ddpm", steps=a.steps, seed=0, start="exact", progress=False)
    n = 64
    t_fused, r_fused = timed(lambda: ms.sample(single, n, **kw), a.repeats)
    t_py, _ = timed(lambda: ms.sample(single, n, fused=False, **kw), a.repeats)
    t_dask, r_dask = timed(lambda: ms.sample(model, n, **kw), a.repeats)
    dev = float(np.abs(r_dask.samples - r_fused.samples).max())
    print(f"\n2. ddpm sampler, n = {n} samples, {a.steps} steps, N = {a.n}")
    print("| loop | s | s per step |\n|---|---|---|")
    for name, t in (
        ("fused C++ (1 process)", t_fused),
        ("Python loop (1 process)", t_py),
        ("Python loop, Dask shards", t_dask),
    ):
        print(f"| {name} | {t:.3f} | {t / a.steps:.4f} |")
    print(
        f"overhead per step against the Python loop: {(t_dask - t_py) / a.steps:.4f} s; "
        f"max |sample diff| vs fused = {dev:.2g}"
    )


def write_shards(folder, n_total, d, shards):
    """float64 .npy shards written in pieces (the client never holds the whole set)."""
    paths, rng, rows = [], np.random.default_rng(1), n_total // shards
    for j in range(shards):
        p = os.path.join(folder, f"shard{j}.npy")
        out = np.lib.format.open_memmap(p, mode="w+", dtype=np.float64, shape=(rows, d))
        for i in range(0, rows, 65536):
            out[i : i + 65536] = rng.standard_normal((min(65536, rows - i), d))
        out.flush()
        del out
        paths.append(p)
    return paths, rows * shards


def beyond_one_worker(a, sch):
    limit = a.limit_mb
    n_total = int(a.factor * limit * 2**20 / (8 * a.d))
    with tempfile.TemporaryDirectory(dir=a.dir) as folder:
        paths, n_total = write_shards(folder, n_total, a.d, a.files)
        size_mb = n_total * a.d * 8 / 2**20
        cfg = {"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False}
        with dask.config.set(cfg):
            c, client = cluster(limit)
            with c, client:
                base = worker_rss_mb(client)
                t_build, model = timed(lambda: ms.EmpiricalScore(paths, sch, dtype=np.float32))
                head = np.load(paths[3], mmap_mode="r")
                x = np.asarray(head[: a.m], np.float32)  # training points 3 * rows + i
                model.stats(x, 1e-3)
                t_stats, st = timed(lambda: model.stats(x, 1e-3), a.repeats)
                ok = bool(np.array_equal(st.argmax, 3 * (n_total // a.files) + np.arange(a.m)))
                kw = dict(sampler="ddpm", steps=3, seed=0, progress=False)
                t_samp, _ = timed(lambda: ms.sample(model, 64, **kw))
                rss = worker_rss_mb(client)
    print(
        f"\n3. beyond one worker: N = {n_total}, D = {a.d}: {size_mb:.0f} MiB of float64 "
        f".npy shards ({a.files} files), worker memory limit {limit} MiB (spilling off), computed "
        f"in float32 (each worker holds its shards twice: the shard and the centred copy)"
    )
    print(f"worker RSS before / after: {base} / {rss} MiB")
    print(
        f"build (read + prepare on the workers): {t_build:.2f} s; stats, M = {a.m}: "
        f"{t_stats:.3f} s ({a.m * n_total / t_stats:.3g} M N / s); argmax of training "
        f"points exact: {ok}; ddpm, 64 samples: {t_samp / 3:.3f} s per step"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--n", type=int, default=200000)
    p.add_argument("--m", type=int, default=512)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--limit-mb", type=int, default=2048)
    p.add_argument("--factor", type=float, default=1.1, help="training set / memory limit")
    p.add_argument("--files", type=int, default=16, help=".npy shards of section 3")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", default=None, help="where the .npy shards are written")
    p.add_argument("--parts", default="123", help="which sections to run, e.g. 3")
    a = p.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.1f}; engine {_core.isa()}, {_core.max_threads()} threads; "
        f"dask {dask.__version__}"
    )
    rng = np.random.default_rng(0)
    X = rng.standard_normal((a.n, a.d)).astype(np.float32)
    x = X[rng.integers(0, a.n, a.m)] + np.float32(0.3) * rng.standard_normal((a.m, a.d)).astype(
        np.float32
    )
    if "1" in a.parts or "2" in a.parts:
        throughput(a, X, x, ms.VP())
    if "3" in a.parts:
        beyond_one_worker(a, ms.VP())


if __name__ == "__main__":
    main()
