"""Ratio table from one run on this machine: exact k-NN with ms.nearest (cpu kernel) against
FAISS IndexFlatL2 (faiss-cpu) and scikit-learn NearestNeighbors(algorithm="brute"), with the
machine's float32 GEMM throughput (NumPy's BLAS) as the physical limit for the 2 M N D flops.

    python bench/nearest_compare.py [--m 4096] [--n 50000] [--dims 64 784 3072] [--k 2]
                                    [--data normal|pixels] [--repeats 2]

Every library searches a prebuilt index (FAISS add, sklearn fit and mixscore's packing are
timed separately in the "build" columns). The "exact" columns check the peers' answers against
mixscore's exact ones: queries 0..63 are copies of training points (exact distance 0), and
"top-1 differs" counts queries whose nearest index differs from the exact one.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import mixscore as ms
import numpy as np


def timed(fn, args, repeats):
    """(best time of `repeats` calls fn(*args), last result)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times), out


def fmt(t):
    return "-" if t is None else f"{t:.3f}"


def ratio(t, ref):
    return "-" if t is None else f"{t / ref:.2f}x"


def make_data(kind, n, m, d, rng):
    if kind == "pixels":  # 0..255 images-like data: large norms, where float32 expansion fails
        X = np.round(rng.uniform(0, 255, (n, d))).astype(np.float32)
        Q = np.round(rng.uniform(0, 255, (m, d))).astype(np.float32)
    else:
        X = rng.standard_normal((n, d), dtype=np.float32)
        Q = rng.standard_normal((m, d), dtype=np.float32)
    Q[:64] = X[rng.choice(n, 64, replace=False)]
    return X, Q


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--m", type=int, default=4096)
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--dims", type=int, nargs="+", default=[64, 784, 3072])
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--data", choices=("normal", "pixels"), default="normal")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--no-sklearn", action="store_true")
    p.add_argument("--threads", type=int, default=0,
                   help="threads for every library (0: their defaults, all cores)")
    args = p.parse_args()
    from mixscore import _core

    try:
        import faiss
    except ImportError:
        faiss = None
    try:
        from sklearn.neighbors import NearestNeighbors
    except ImportError:
        NearestNeighbors = None
    if args.no_sklearn:
        NearestNeighbors = None
    if args.threads:
        if faiss is not None:
            faiss.omp_set_num_threads(args.threads)
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)  # NumPy's and sklearn's BLAS
        except ImportError:
            pass
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"isa {_core.isa()}, threads {args.threads or _core.max_threads()}, "
          f"numpy {np.__version__}, "
          f"faiss {getattr(faiss, '__version__', '-')}")
    print(f"M = {args.m} queries, N = {args.n} points, k = {args.k}, float32 {args.data} data; "
          f"search times are the best of {args.repeats} runs")
    header = ("D", "mixscore s", "faiss s", "sklearn s", "vs faiss", "vs sklearn",
              "sgemm GF/s", "mixscore GF/s", "of sgemm", "build ms/faiss s",
              "faiss copy d1 max", "faiss top-1 differs", "sklearn top-1 differs")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rng = np.random.default_rng(0)
    for d in args.dims:
        X, Q = make_data(args.data, args.n, args.m, d, rng)
        flops = 2.0 * args.m * args.n * d
        sub = X[: min(args.n, 8192)]
        t_gemm, _ = timed(np.matmul, (Q, sub.T), args.repeats + 1)
        gemm_rate = 2.0 * args.m * sub.shape[0] * d / t_gemm

        t0 = time.perf_counter()
        index = ms.NearestIndex(X, num_threads=args.threads)
        t_build = time.perf_counter() - t0
        index.search(Q[:128], args.k)
        t_ms, (dist, idx) = timed(index.search, (Q, args.k), args.repeats)

        t_f = f_build = None
        f_copy = f_diff = "-"
        if faiss is not None:
            t0 = time.perf_counter()
            fi = faiss.IndexFlatL2(d)
            fi.add(X)
            f_build = time.perf_counter() - t0
            fi.search(Q[:128], args.k)
            t_f, (fd2, fidx) = timed(fi.search, (Q, args.k), args.repeats)
            f_copy = f"{np.sqrt(np.maximum(fd2[:64, 0], 0)).max():.3g}"
            f_diff = str(int(np.sum(fidx[:, 0] != idx[:, 0])))
        t_s = None
        s_diff = "-"
        if NearestNeighbors is not None:
            nn = NearestNeighbors(n_neighbors=args.k, algorithm="brute").fit(X)
            t_s, (sd, sidx) = timed(nn.kneighbors, (Q,), max(1, args.repeats - 1))
            s_diff = str(int(np.sum(sidx[:, 0] != idx[:, 0])))

        build = f"{t_build:.2f}/{f_build:.2f}" if f_build is not None else f"{t_build:.2f}/-"
        print(f"| {d} | {t_ms:.3f} | {fmt(t_f)} | {fmt(t_s)} | {ratio(t_f, t_ms)} | "
              f"{ratio(t_s, t_ms)} | "
              f"{gemm_rate / 1e9:.0f} | {flops / t_ms / 1e9:.0f} | {flops / t_ms / gemm_rate:.0%}"
              f" | {build} | {f_copy} | {f_diff} | {s_diff} |", flush=True)


if __name__ == "__main__":
    main()
