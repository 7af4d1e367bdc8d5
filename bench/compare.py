"""Ratio table from one run on this machine: mixscore (cpu engine) against the dense NumPy
reference (GEMM + softmax + GEMM, float32, the way such scores are usually hand-rolled),
pykeops when installed, and the machine's float32 GEMM throughput (NumPy's BLAS) as the
physical limit for the 4 M N D flops of a score evaluation.

    python bench/compare.py [--m 4096] [--n 20000] [--dims 2 64 784 3072] [--t 0.01 0.1 0.5]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import mixscore as ms
import numpy as np


def best_of(fn, repeats):
    fn()  # warm-up (page faults, lazy initialisation)
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

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"engine isa {_core.isa()}, threads {_core.max_threads()}, numpy {np.__version__}")
    print(f"M = {args.m} queries, N = {args.n} points, float32, VP schedule, denoiser; "
          "times are the best of the runs")
    keops = keops_denoiser()
    rng = np.random.default_rng(0)
    sde = ms.VP()
    header = ("D", "t", "sigma", "numpy s", "mixscore s", "vs numpy", "sgemm GF/s",
              "mixscore GF/s", "of sgemm", "keops s")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for d in args.dims:
        X = rng.standard_normal((args.n, d)).astype(np.float32)
        y = rng.standard_normal((args.m, d)).astype(np.float32)
        A = rng.standard_normal((args.m, d)).astype(np.float32)
        t_gemm = best_of(lambda A=A, X=X: A @ X.T, args.repeats)
        gemm_rate = 2 * args.m * args.n * d / t_gemm
        model = ms.EmpiricalScore(X, sde)
        for t in args.t:
            a, s2 = float(sde.alpha(t)), float(sde.sigma2(t))
            x = (a * X[rng.integers(0, args.n, args.m)] + np.sqrt(s2) * y).astype(np.float32)
            t_np = best_of(lambda x=x, X=X, a=a, s2=s2: numpy_dense(x, X, a, s2), args.repeats)
            t_ms = best_of(lambda x=x, t=t, model=model: model.denoise(x, t), args.repeats)
            rate = 4 * args.m * args.n * d / t_ms
            t_ko = "-"
            if keops is not None:
                t_ko = f"{best_of(lambda x=x, X=X, a=a, s2=s2: keops(x, X, a, s2), 1):.3f}"
            print(f"| {d} | {t} | {np.sqrt(s2):.3g} | {t_np:.3f} | {t_ms:.3f} | "
                  f"{t_np / t_ms:.1f}x | {gemm_rate / 1e9:.0f} | {rate / 1e9:.0f} | "
                  f"{rate / gemm_rate:.0%} | {t_ko} |", flush=True)


if __name__ == "__main__":
    main()
