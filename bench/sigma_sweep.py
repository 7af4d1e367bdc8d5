"""Sweep of the noise level: the exact denoiser from sigma = 1e-3 to 1e3 times the data scale.

For each dimension D, data kind (uniform on [-1, 1]^D, standard normal) and sigma, one table row
with the time of mixscore (float32 model) and of dense implementations measured in the same
run, and each one's largest error on the denoiser against the float64 NumPy reference (on the
first `--m-ref` queries), in units of the data scale (the accuracy contract is 1e-4):

* numpy f32 / f64: the usual hand-rolled dense denoiser (logits by GEMM, softmax, GEMM);
* torch f32 / f64 (if torch is installed): cdist + softmax + matmul, TF32 off, all threads.

Queries are training points noised at sigma (x = X_j + sigma z), alpha = 1.

    python bench/sigma_sweep.py [--n 20000] [--m 256] [--dims 64 784 3072]
                                [--factors 1e-3 1e-2 1e-1 1 1e1 1e2 1e3] [--data uniform normal]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import mixscore as ms
import numpy as np
from mixscore.benchmarks import best_of, numpy_dense_denoiser


def torch_dense(torch):
    def run(x, X, s2):
        d2 = torch.cdist(x, X) ** 2
        return torch.softmax(-d2 / (2 * s2), dim=1) @ X

    return run


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--m", type=int, default=256)
    p.add_argument("--m-ref", type=int, default=16)
    p.add_argument("--dims", type=int, nargs="+", default=[64, 784, 3072])
    p.add_argument("--factors", type=float, nargs="+",
                   default=[1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3])
    p.add_argument("--data", nargs="+", default=["uniform", "normal"])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    try:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        dense_t = torch_dense(torch)
    except ImportError:
        torch = None
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"numpy {np.__version__}, torch {getattr(torch, '__version__', '-')}")
    print(f"N = {args.n}, M = {args.m}, denoiser, alpha = 1; time in s (best of "
          f"{args.repeats}); err = max |denoised - reference| / data scale over {args.m_ref} "
          "queries")
    impls = ["mixscore f32", "numpy f32", "numpy f64"]
    if torch is not None:
        impls += ["torch f32", "torch f64"]
    header = ["data", "D", "sigma/scale"] + [f"{i} {c}" for i in impls for c in ("s", "err")]
    header += ["mixscore vs best f32"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rng = np.random.default_rng(0)
    sde = ms.Brownian(T=1e12)  # sigma^2 = t, alpha = 1
    for kind in args.data:
        for d in args.dims:
            if kind == "uniform":
                X = rng.uniform(-1, 1, (args.n, d))
                scale = 1 / np.sqrt(3)
            else:
                X = rng.standard_normal((args.n, d))
                scale = 1.0
            X32 = X.astype(np.float32)
            X = X32.astype(np.float64)  # every implementation sees the same (float32) data
            model = ms.EmpiricalScore(X32, sde)
            ref = ms.EmpiricalScore(X32.astype(np.float64), sde, backend="numpy")
            z = rng.standard_normal((args.m, d))
            rows = X[rng.integers(0, args.n, args.m)]
            for f in args.factors:
                sigma = f * scale
                x32 = (rows + sigma * z).astype(np.float32)
                want = ref.denoise(x32[: args.m_ref].astype(np.float64), sigma**2)
                res = {}
                res["mixscore f32"] = best_of(
                    lambda x=x32, s=sigma, m=model: m.denoise(x, s**2), args.repeats)
                res["numpy f32"] = best_of(
                    lambda x=x32, s=sigma, T=X32: numpy_dense_denoiser(x, T, 1.0, s * s),
                    args.repeats)
                x64 = x32.astype(np.float64)
                res["numpy f64"] = best_of(
                    lambda x=x64, s=sigma, T=X: numpy_dense_denoiser(x, T, 1.0, s * s),
                    args.repeats)
                if torch is not None:
                    for name, dt in (("torch f32", torch.float32), ("torch f64", torch.float64)):
                        xt, Xt = torch.from_numpy(x32).to(dt), torch.from_numpy(X32).to(dt)
                        res[name] = best_of(
                            lambda xt=xt, Xt=Xt, s=sigma: dense_t(xt, Xt, s * s).numpy(),
                            args.repeats)
                cells = [kind, str(d), f"{f:g}"]
                for name in impls:
                    t, out = res[name]
                    err = np.max(np.abs(np.asarray(out[: args.m_ref], np.float64) - want)) / scale
                    cells += [f"{t:.3f}", "nan" if not np.isfinite(err) else f"{err:.1e}"]
                f32 = [res[n][0] for n in impls if n.endswith("f32") and n != "mixscore f32"]
                cells.append(f"{min(f32) / res['mixscore f32'][0]:.2f}x")
                print("| " + " | ".join(cells) + " |", flush=True)
                print(f"{kind} D={d} sigma/scale={f:g} done", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
