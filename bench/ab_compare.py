"""A/B table: the same benchmark rows timed on two installed builds of mixscore in one run.

Each build lives in its own Python environment (e.g. the previous main installed in one venv,
this checkout in another). For every row the two builds are run alternately (A, B, A, B, ... in
fresh processes, so neither gets a warmer machine), each process timing the row as the best of
`--repeats` calls after a warm-up, and the table reports each build's best and the ratio B / A.
Only API present in both builds is used. Rows (the defaults of the three compare scripts):

* engine: ``model.denoise`` at M = 4096, N = 20000, float32, VP, D in {2, 64, 784, 3072},
  t in {0.01, 0.1, 0.5} (bench/compare.py);
* nearest: ``NearestIndex.search`` at M = 4096, N = 50000, k = 2, D in {64, 784, 3072}
  (bench/nearest_compare.py), and the index build;
* sampler: ``ms.sample`` fused, n = 1000, N = 1797, D = 64, 500 steps of euler_maruyama
  (bench/sampler_compare.py), and the same through the Python loop;
* demo: ``mixscore demo --quick`` end to end (preparation, sampling, memorization report).

    python bench/ab_compare.py --a /path/to/old/venv/bin/python --b /path/to/new/venv/bin/python
                               [--rounds 2] [--repeats 3] [--groups engine nearest sampler demo]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time


def best_of(fn, repeats):
    time.sleep(0.2)  # let idle threads of the previous call park
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def worker_engine(d, repeats):
    import mixscore as ms
    import numpy as np

    m, n = 4096, 20000
    rng = np.random.default_rng(d)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = rng.standard_normal((m, d)).astype(np.float32)
    sde = ms.VP()
    model = ms.EmpiricalScore(X, sde)
    out = {}
    for t in (0.01, 0.1, 0.5):
        a, s2 = float(sde.alpha(t)), float(sde.sigma2(t))
        x = (a * X[rng.integers(0, n, m)] + np.sqrt(s2) * y).astype(np.float32)
        out[f"engine D={d} t={t}"] = best_of(lambda x=x, t=t: model.denoise(x, t), repeats)
    return out


def worker_nearest(d, repeats):
    import mixscore as ms
    import numpy as np

    m, n = 4096, 50000
    rng = np.random.default_rng(d)
    X = rng.standard_normal((n, d)).astype(np.float32)
    Q = np.concatenate([X[:64], rng.standard_normal((m - 64, d)).astype(np.float32)])
    t0 = time.perf_counter()
    index = ms.NearestIndex(X)
    build = time.perf_counter() - t0
    return {f"nearest D={d} search": best_of(lambda: index.search(Q, 2), repeats),
            f"nearest D={d} build": build}


def worker_sampler(_d, repeats):
    import mixscore as ms
    import numpy as np

    X = np.random.default_rng(0).standard_normal((1797, 64)).astype(np.float32)
    model = ms.EmpiricalScore(X, ms.VP())
    kw = dict(sampler="euler_maruyama", steps=500, seed=0, progress=False)
    return {"sampler fused": best_of(lambda: ms.sample(model, 1000, **kw), repeats),
            "sampler python loop": best_of(lambda: ms.sample(model, 1000, fused=False, **kw),
                                           max(1, repeats - 1))}


def worker_demo(_d, repeats):
    best = float("inf")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            cli = os.path.join(os.path.dirname(sys.executable), "mixscore")
            subprocess.run([cli, "demo", "--quick", "--out", os.path.join(tmp, "demo")],
                           check=True, capture_output=True)
            best = min(best, time.perf_counter() - t0)
    return {"demo --quick (subprocess)": best}


WORKERS = {"engine": (worker_engine, (2, 64, 784, 3072)),
           "nearest": (worker_nearest, (64, 784, 3072)),
           "sampler": (worker_sampler, (0,)),
           "demo": (worker_demo, (0,))}


def run_worker(python, group, d, repeats):
    out = subprocess.run([python, os.path.abspath(__file__), "--worker", group, str(d),
                          str(repeats)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_info(python):
    code = ("import mixscore, mixscore._core as c, subprocess, os; "
            "d = os.path.dirname(mixscore.__file__); print(mixscore.__file__, c.isa())")
    return subprocess.run([python, "-c", code], check=True, capture_output=True,
                          text=True).stdout.strip()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        group, d, repeats = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(WORKERS[group][0](d, repeats)))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="Python of build A (the baseline)")
    p.add_argument("--b", required=True, help="Python of build B (the change)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--groups", nargs="+", default=list(WORKERS), choices=list(WORKERS))
    args = p.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus")
    print(f"A: {build_info(args.a)}\nB: {build_info(args.b)}")
    best = {"A": {}, "B": {}}
    for group in args.groups:
        for d in WORKERS[group][1]:
            for r in range(args.rounds):
                order = ("A", "B") if r % 2 == 0 else ("B", "A")
                for which in order:
                    python = args.a if which == "A" else args.b
                    for row, t in run_worker(python, group, d, args.repeats).items():
                        best[which][row] = min(best[which].get(row, float("inf")), t)
            for row in best["A"]:
                if row not in best.get("_printed", ()):
                    print(f"{row}: A {best['A'][row]:.4f} s, B {best['B'][row]:.4f} s",
                          file=sys.stderr, flush=True)
            best["_printed"] = set(best["A"])
    print(f"best of {args.repeats} calls per process, {args.rounds} processes per build, "
          "alternating")
    print("| row | A s | B s | B / A |")
    print("|---|---|---|---|")
    for row, ta in best["A"].items():
        tb = best["B"][row]
        print(f"| {row} | {ta:.4f} | {tb:.4f} | {tb / ta:.3f} |")


if __name__ == "__main__":
    main()
