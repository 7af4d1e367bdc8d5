"""Where a sampling run on the GPU spends its time: ``ms.sample`` with the model on CUDA tensors,
by the fused GPU loop (cuda backend, cuda/sampler.cu: the host only queues launches) and by the
device loop (sampling/device.py: Python drives one posterior pass per denoiser call; the cuda
backend with fused=False and the cupy fallback), against the CPU loop, in one
run, and the share of each step that is the posterior pass itself (``stats`` alone at the
grid's times, on states drawn from the noised data there). The fused loop's gain over the
device loop is what the Python loop's launches and synchronizations cost.

    python bench/gpu_sampler.py [--steps 20] [--rows D,N,n ...] [--sampler ddpm] [--json out.json]
    python bench/gpu_sampler.py --device cpu      # a smoke run without a GPU (CPU tensors)

Rows: (D, N, n samples) in {(2, 10000, 1000), (64, 20000, 1000), (784, 20000, 256)}, DDPM (or
``--sampler``: naive, R = 1, and effective, kappa = 0.05, time the draws and noise kernels) on
a geometric VP grid, float32 data. Per row: ms per step of each loop, ms of the pass per
step, the pass's share of the step, and the CPU's ms per step (the fused C++ loop, the same
machine's CPU; not for naive / effective on a GPU, where only the cuda loops run).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import mixscore as ms
import numpy as np
import torch

ROWS = ((2, 10_000, 1000), (64, 20_000, 1000), (784, 20_000, 256))


def seconds(fn, device) -> float:
    """Best of 3 after a warm-up, the device synchronized."""
    best = float("inf")
    for i in range(4):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            best = min(best, time.perf_counter() - t0)
    return best


def sampling(model, n: int, kw: dict, device) -> float:
    return seconds(lambda: ms.sample(model, n, **kw), device)


def passes(model, X, n: int, ts, device) -> float:
    """Seconds of the posterior passes alone over the grid's times (one per step, at states
    drawn from the noised data there: what the sampler's states look like)."""
    sch, r = model.schedule, np.random.default_rng(1)
    rows = r.integers(0, X.shape[0], n)
    total = 0.0
    for t in ts[:-1]:
        a, s = float(sch.alpha(np.array([t]))[0]), float(sch.sigma(np.array([t]))[0])
        x = torch.from_numpy((a * X[rows] + s * r.standard_normal((n, X.shape[1])))
                             .astype(X.dtype)).to(device)
        total += seconds(lambda x=x, t=t: model.stats(x, t, include="denoised"), device)
    return total


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rows", nargs="+", default=None, metavar="D,N,n",
                   help="cases as D,N,n (default: the three rows above)")
    p.add_argument("--sampler", default="ddpm", choices=("ddpm", "naive", "effective"))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    # (backend, fused): the GPU loop, and the device loop of each backend; the posterior
    # samplers on cuda only, without the CPU (elsewhere their draws / noise are host passes)
    posterior = args.sampler != "ddpm"
    if device.type != "cuda":
        loops = [("cupy", False)]
    else:
        loops = [("cuda", True), ("cuda", False)] + ([] if posterior else [("cupy", False)])
    sch, rows = ms.VP(), []
    print(f"{'D':>5} {'N':>6} {'n':>5}  {'loop':<10}  ms/step  pass ms  pass share  "
          "cpu ms/step")
    cases = [tuple(int(v) for v in r.split(",")) for r in args.rows] if args.rows else [
        (d, N // 10, n // 10) if device.type == "cpu" else (d, N, n) for d, N, n in ROWS]
    for d, N, n in cases:  # (smaller by default on the CPU: a smoke run)
        r = np.random.default_rng(d)
        X = r.standard_normal((N, d)).astype(np.float32)
        kw = dict(sampler=args.sampler, steps=args.steps, seed=0, start="prior",
                  **({"kappa": 0.05} if args.sampler == "effective" else {}))
        cpu_step = math.nan if posterior and device.type == "cuda" else sampling(
            ms.EmpiricalScore(X, sch), n, kw, torch.device("cpu"))
        for backend, fused in loops:
            name = backend + (" fused" if fused else " loop")
            try:
                model = ms.EmpiricalScore(torch.from_numpy(X).to(device), sch, backend=backend)
            except (RuntimeError, ImportError) as e:
                print(f"{d:>5} {N:>6} {n:>5}  {name:<10}  skipped: {e}")
                continue
            run = sampling(model, n, dict(kw, fused=fused), device) / args.steps
            one = passes(model, X, n, sch.grid(args.steps, "geometric"), device) / args.steps
            rows.append(dict(D=d, N=N, n=n, backend=backend, fused=fused, ms_per_step=1e3 * run,
                             pass_ms=1e3 * one, pass_share=one / run,
                             cpu_ms_per_step=1e3 * cpu_step / args.steps))
            print(f"{d:>5} {N:>6} {n:>5}  {name:<10}  {1e3 * run:7.2f}  {1e3 * one:7.2f}  "
                  f"{one / run:10.2f}  {1e3 * cpu_step / args.steps:11.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "steps": args.steps, "sampler": args.sampler,
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
