"""Ratio table for the fused sampler (issue 3), from one run on this machine.

Compares, for the same samples, grid and noise:
  fused         ms.sample(EmpiricalScore on cpu): the whole loop in one C++ call
  score calls   single model.denoise calls on the states the trajectory visits (the cost floor
                of any loop)
  python+cpu    ms.sample(..., fused=False): the Python loop over the C++ engine
  python+numpy  the Python loop over the float64 NumPy reference (timed on --numpy-steps
                steps and scaled to the full grid; the table says so)
and the naive sampler (generalization-through-variance paper, --naive-R posterior draws per
step) fused against the fused Euler PF-ODE sampler on the same grid (issue 13's target: at most
1.5x for R = 4), with its Python loop over the same C++ draws for reference.

    python bench/sampler_compare.py [--n 1000] [--N 1797] [--d 64] [--steps 500] [--naive-R 4]
"""

from __future__ import annotations

import argparse
import platform

import mixscore as ms
import numpy as np
from mixscore import _core
from mixscore.benchmarks import best_of


def timed(fn, repeats=1):
    """Best wall time of ``repeats`` runs, no warm-up (mixscore.benchmarks.best_of)."""
    return best_of(fn, repeats, warmup=False)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--N", type=int, default=1797)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--numpy-steps", type=int, default=5)
    p.add_argument("--sampler", default="euler_maruyama")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--naive-R", type=int, default=4, help="0: leave the naive sampler out")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((a.N, a.d)).astype(a.dtype)
    model = ms.EmpiricalScore(X, ms.VP())
    kw = dict(sampler=a.sampler, steps=a.steps, seed=0, progress=False)
    ms.sample(model, a.n, **kw)  # warm-up
    t_fused, res = timed(lambda: ms.sample(model, a.n, **kw), a.repeats)
    ts = res.times
    # the states the trajectory visits, so the single calls see the same workload
    states = ms.sample(model, a.n, save_steps=np.arange(a.steps), **kw).saved
    t_calls, _ = timed(lambda: [model.denoise(states[k], ts[k]) for k in range(a.steps)],
                       a.repeats)
    t_loop, res_loop = timed(lambda: ms.sample(model, a.n, fused=False, **kw), a.repeats)
    assert np.array_equal(res_loop.samples, res.samples)
    ref = ms.EmpiricalScore(X, ms.VP(), backend="numpy")
    k = min(a.numpy_steps, a.steps)
    grid = ts[: k + 1]
    t_np, _ = timed(lambda: ms.sample(ref, a.n, sampler=a.sampler, grid=grid, seed=0,
                                      progress=False))
    t_np *= a.steps / k
    print(f"machine: {platform.processor() or platform.machine()}, isa {_core.isa()}, "
          f"threads {_core.max_threads()}; n = {a.n}, N = {a.N}, D = {a.d}, {a.dtype}, "
          f"{a.steps} steps of {a.sampler}; best of {a.repeats} (numpy: 1)")
    print("| runner | seconds | fused is faster by |")
    print("|---|---|---|")
    for name, t in (("fused (one C++ call)", t_fused),
                    (f"{a.steps} single denoise calls", t_calls),
                    ("Python loop over the C++ engine", t_loop),
                    (f"Python loop over the NumPy reference (x{a.steps // k} from {k} steps)",
                     t_np)):
        print(f"| {name} | {t:.3f} | {t / t_fused:.2f}x |")
    print(f"fused / score calls = {t_fused / t_calls:.3f} (target <= 1.1); "
          f"numpy loop / fused = {t_np / t_fused:.1f} (target >= 10)")
    if a.naive_R > 0:
        naive_table(model, a)


def naive_table(model, a):
    """The fused naive sampler (R draws per step) against the fused Euler PF-ODE sampler."""
    kw = dict(steps=a.steps, seed=0, progress=False)
    t_euler, _ = timed(lambda: ms.sample(model, a.n, sampler="euler", **kw), a.repeats)
    naive = dict(sampler="naive", R=a.naive_R, **kw)
    t_naive, res = timed(lambda: ms.sample(model, a.n, **naive), a.repeats)
    assert res.settings["fused"]
    t_loop, res_loop = timed(lambda: ms.sample(model, a.n, fused=False, **naive))
    assert np.array_equal(res_loop.samples, res.samples)
    print(f"naive sampler, R = {a.naive_R}, {a.steps} steps, n = {a.n}: best of {a.repeats} "
          "(Python loop: 1)")
    print("| runner | seconds | / fused euler |")
    print("|---|---|---|")
    for name, t in (("fused euler (PF-ODE)", t_euler),
                    (f"fused naive, R = {a.naive_R}", t_naive),
                    ("Python loop over the C++ draws", t_loop)):
        print(f"| {name} | {t:.3f} | {t / t_euler:.2f}x |")
    print(f"fused naive / fused euler = {t_naive / t_euler:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
