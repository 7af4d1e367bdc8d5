"""Ratio table from one run on this machine: mixscore (cpu engine) against the dense NumPy
reference (GEMM + softmax + GEMM, float32, the way such scores are usually hand-rolled),
pykeops when installed, the machine's float32 GEMM throughput (NumPy's BLAS) for the 4 M N D
flops of a score evaluation, and a measured physical limit.

The limit is a lower bound on the time of an exact evaluation under a stated model, measured in
the same run: every (query, training point) pair needs its logit (a 2 D-flop product), and the
fraction `frac` of pairs that carry weight (logit within the engine's cutoff, log N + 20 nats,
of the query's maximum; measured densely in float64 on 256 of the row's queries) also needs one
float32 exp and its 2 D-flop share of the weighted sum. With every flop at the peak float32 FMA
rate (register-resident chains, `_bench.fma_peak_gflops`) and every exp at the faster of our and
NumPy's float32 exp rates on in-cache data:

    limit_s = (2 M N D + 2 frac M N D) / peak_flops + frac M N / exp32_rate

"max vs numpy" = numpy_s / limit_s is then the largest speed-up any such method could show here,
and "of limit" = limit_s / mixscore_s how close mixscore gets. The model ignores memory traffic
(optimistic), and a spatial index could skip most of the first product at tiny sigma (then the
bound does not apply): a bound under these assumptions, not a theorem.

    python bench/compare.py [--m 4096] [--n 20000] [--dims 2 64 784 3072] [--t 0.01 0.1 0.5]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import mixscore as ms
import numpy as np


def best_of(fn, repeats):
    # The other library's idle threads spin for a while after its last call (OpenBLAS for about
    # 0.1 s) and would share the two cores with this one: let them park first.
    time.sleep(0.3)
    fn()  # warm-up (page faults, lazy initialisation, waking this library's threads)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def numpy_dense(x, X, a, s2):
    """The usual hand-rolled exact denoiser: an M x N logit matrix in float32."""
    logits = (a * (x @ X.T) - 0.5 * a * a * np.einsum("nd,nd->n", X, X)) / s2
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    return (logits @ X) / logits.sum(axis=1, keepdims=True)


def numpy_exp_rate(dtype, threads, n=16384, reps=100, repeats=3):
    """np.exp evaluations per second on in-cache arrays, one per Python thread (ufuncs release
    the GIL); best of `repeats`."""
    bufs = [(np.linspace(-30, 0, n).astype(dtype), np.empty(n, dtype)) for _ in range(threads)]

    def work(i):
        a, b = bufs[i]
        for _ in range(reps):
            np.exp(a, out=b)

    best = 0.0
    with ThreadPoolExecutor(threads) as ex:
        for _ in range(repeats + 1):  # the first round warms up
            t0 = time.perf_counter()
            list(ex.map(work, range(threads)))
            best = max(best, threads * reps * n / (time.perf_counter() - t0))
    return best


EXP_RATES = ("ours float32", "ours float64", "numpy float32", "numpy float64")


def measure_limits(core, threads, best=None):
    """Peak float32 FMA flop/s and exp/s (ours and NumPy's), each the best of a few calls and of
    `best` (an earlier measurement): a shared machine only ever makes a measurement slower."""
    from mixscore import _bench

    isa = core.isa()  # measure the instruction set the engine runs
    now = {"peak": max(_bench.fma_peak_gflops(isa=isa) for _ in range(3)) * 1e9}
    for dt in ("float32", "float64"):
        now[f"ours {dt}"] = max(_bench.exp_throughput(dt, isa=isa) for _ in range(3))
        now[f"numpy {dt}"] = numpy_exp_rate(dt, threads)
    return now if best is None else {k: max(v, best[k]) for k, v in now.items()}


def weight_fraction(x, X, a, s2, cut, rng, m=256):
    """Fraction of (query, point) pairs whose logit is within `cut` nats of the query's maximum,
    from a dense float64 computation on m of the queries."""
    q = x[rng.choice(len(x), min(m, len(x)), replace=False)].astype(np.float64)
    X = X.astype(np.float64)
    lam = (q * q).sum(1)[:, None] - 2 * a * (q @ X.T) + a * a * (X * X).sum(1)
    gap = (lam - lam.min(axis=1, keepdims=True)) / (2 * s2)
    return float(np.mean(gap <= cut))


def keops_denoiser():
    try:
        from pykeops.numpy import LazyTensor
    except ImportError:
        return None

    def run(x, X, a, s2):
        xi = LazyTensor(x[:, None, :])
        xj = LazyTensor(X[None, :, :])
        d2 = ((xi - a * xj) ** 2).sum(-1)
        return (-d2 / (2 * s2)).sumsoftmaxweight(xj, axis=1)

    return run


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--m", type=int, default=4096)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--dims", type=int, nargs="+", default=[2, 64, 784, 3072])
    p.add_argument("--t", type=float, nargs="+", default=[0.01, 0.1, 0.5])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    from mixscore.backends.cpu import _core

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"engine isa {_core.isa()}, threads {_core.max_threads()}, numpy {np.__version__}"
    )
    threads = _core.max_threads()
    limits = None
    print(
        f"M = {args.m} queries, N = {args.n} points, float32, VP schedule, denoiser; "
        "times are the best of the runs"
    )
    # The float32 engine's cutoff (cpp/src/posterior.hpp, run): min(60, log N + 20) nats.
    cut = min(60.0, np.log(args.n) + 20.0)
    keops = keops_denoiser()
    rng = np.random.default_rng(0)
    sub_rng = np.random.default_rng(1)  # own stream: the benchmark data stay as before
    sde = ms.VP()
    header = (
        "D",
        "t",
        "sigma",
        "numpy s",
        "mixscore s",
        "vs numpy",
        "sgemm GF/s",
        "mixscore GF/s",
        "of sgemm",
        "keops s",
        "frac in",
        "limit s",
        "max vs numpy",
        "of limit",
    )
    rows = []
    for d in args.dims:
        X = rng.standard_normal((args.n, d)).astype(np.float32)
        y = rng.standard_normal((args.m, d)).astype(np.float32)
        A = rng.standard_normal((args.m, d)).astype(np.float32)
        t_gemm = best_of(lambda A=A, X=X: A @ X.T, args.repeats)
        gemm_rate = 2 * args.m * args.n * d / t_gemm
        model = ms.EmpiricalScore(X, sde)
        limits = measure_limits(_core, threads, limits)  # best over the run
        for t in args.t:
            a, s2 = float(sde.alpha(t)), float(sde.sigma2(t))
            x = (a * X[rng.integers(0, args.n, args.m)] + np.sqrt(s2) * y).astype(np.float32)
            t_np = best_of(lambda x=x, X=X, a=a, s2=s2: numpy_dense(x, X, a, s2), args.repeats)
            t_ms = best_of(lambda x=x, t=t, model=model: model.denoise(x, t), args.repeats)
            t_ko = None
            if keops is not None:
                t_ko = best_of(lambda x=x, X=X, a=a, s2=s2: keops(x, X, a, s2), 1)
            frac = weight_fraction(x, X, a, s2, cut, sub_rng)
            rows.append((d, t, s2, t_np, t_ms, gemm_rate, t_ko, frac))
            print(
                f"D = {d}, t = {t}: numpy {t_np:.3f} s, mixscore {t_ms:.3f} s",
                file=sys.stderr,
                flush=True,
            )
    # The table at the end, with the limits measured best over the whole run (a limit measured
    # while the machine was busy would be too slow, and the bound too loose).
    exp32 = max(limits["ours float32"], limits["numpy float32"])
    print(
        f"limits (best over the run, {threads} threads): peak float32 FMA "
        f"{limits['peak'] / 1e9:.0f} GF/s; exp (G/s) "
        + ", ".join(f"{k} {limits[k] / 1e9:.2f}" for k in EXP_RATES)
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for d, t, s2, t_np, t_ms, gemm_rate, t_ko, frac in rows:
        rate = 4 * args.m * args.n * d / t_ms
        mnd = args.m * args.n * d
        limit = (2 * mnd + 2 * frac * mnd) / limits["peak"] + frac * args.m * args.n / exp32
        ko = "-" if t_ko is None else f"{t_ko:.3f}"
        print(
            f"| {d} | {t} | {np.sqrt(s2):.3g} | {t_np:.3f} | {t_ms:.3f} | "
            f"{t_np / t_ms:.1f}x | {gemm_rate / 1e9:.0f} | {rate / 1e9:.0f} | "
            f"{rate / gemm_rate:.0%} | {ko} | {frac:.3g} | {limit:.3g} | "
            f"{t_np / limit:.1f}x | {limit / t_ms:.0%} |"
        )


if __name__ == "__main__":
    main()
