"""Benchmark tables from the installed package (``mixscore bench``).

Three tables, each timed in one run on this machine, with every time also given as a ratio
against the NumPy reference measured in the same run (ratio = reference seconds / seconds, so
"12x" means twelve times faster than the reference):

* score engine: ``EmpiricalScore.denoise`` (cpu) against the usual hand-rolled dense NumPy
  denoiser (float32 logits M x N, softmax, product; what an exact score is usually written as)
  and, when installed, the same three lines in PyTorch on the CPU;
* nearest: ``ms.nearest`` (cpu) against the float64 NumPy reference backend and, when
  installed, FAISS ``IndexFlatL2`` and scikit-learn's brute-force ``NearestNeighbors``;
* sampler: the fused C++ loop against the Python loop over the NumPy reference (timed on a few
  steps and scaled to the full grid, as the table says).

Every row also reports how far its answer is from the reference's ("max abs diff"), so a fast
wrong answer shows. The full study with limits and the machine is ``bench/`` in the source
tree; ``--quick`` runs small sizes in a few seconds.
"""

from __future__ import annotations

import importlib.util
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from .empirical import EmpiricalScore
from .nearest import nearest
from .sampling import sample
from .schedules import VP


@dataclass
class Sizes:
    """Problem sizes: M queries (or samples), N training points, dimension D."""

    m: int
    n: int
    dim: int
    k: int = 2
    steps: int = 200
    numpy_steps: int = 5
    times: tuple = (0.01, 0.1, 0.5)


FULL = Sizes(m=2048, n=20000, dim=64)
QUICK = Sizes(m=256, n=2000, dim=16, steps=50, numpy_steps=3, times=(0.01, 0.5))


@dataclass
class Row:
    table: str
    case: str
    runner: str
    seconds: float
    vs_numpy: float  # reference seconds / seconds (> 1: faster than the reference)
    max_diff: float  # max abs (answer - the float64 reference's answer)


def best_of(fn: Callable, repeats: int = 1, *, warmup: bool = True):
    """(best wall time of ``repeats`` calls, after one untimed warm-up call unless
    ``warmup=False``; the last result). The best, not the mean: on a shared machine the
    minimum is the least noisy."""
    out = fn() if warmup else None
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def numpy_dense_denoiser(x: np.ndarray, X: np.ndarray, alpha: float, sigma2: float):
    """The hand-rolled exact denoiser: the M x N logits in the data's dtype, softmax, product."""
    logits = (alpha * (x @ X.T) - 0.5 * alpha * alpha * np.einsum("nd,nd->n", X, X)) / sigma2
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    return (logits @ X) / logits.sum(axis=1, keepdims=True)


def _torch_dense_denoiser():
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    def run(x, X, alpha, sigma2):
        xt, Xt = torch.from_numpy(x), torch.from_numpy(X)
        logits = (alpha * (xt @ Xt.T) - 0.5 * alpha * alpha * (Xt * Xt).sum(1)) / sigma2
        return (torch.softmax(logits, dim=1) @ Xt).numpy()

    return run


def _rows(table: str, case: str, timed: dict, ref_name: str, answer=None) -> list[Row]:
    """Rows from {runner: (seconds, answer)}: ratios against ``ref_name``'s time, differences
    against ``answer`` (default: ``ref_name``'s answer)."""
    ref_t, ref_out = timed[ref_name]
    ref_out = np.asarray(ref_out if answer is None else answer, np.float64)
    return [
        Row(
            table,
            case,
            runner,
            t,
            ref_t / t,
            float(np.max(np.abs(np.asarray(ans, np.float64) - ref_out))),
        )
        for runner, (t, ans) in timed.items()
    ]


def bench_score(s: Sizes, repeats: int, rng: np.random.Generator) -> list[Row]:
    X = rng.standard_normal((s.n, s.dim), dtype=np.float32)
    x = X[rng.integers(0, s.n, s.m)] + 0.3 * rng.standard_normal((s.m, s.dim), np.float32)
    sch = VP()
    model = EmpiricalScore(X, sch)
    oracle = EmpiricalScore(X, sch, backend="numpy")  # float64
    torch_dense = _torch_dense_denoiser()
    rows = []
    for t in s.times:
        a, s2 = float(sch.alpha(t)), float(sch.sigma2(t))
        timed = {
            "numpy dense (float32)": best_of(
                lambda a=a, s2=s2: numpy_dense_denoiser(x, X, a, s2), repeats
            )
        }
        timed["mixscore cpu"] = best_of(lambda t=t: model.denoise(x, t), repeats)
        if torch_dense is not None:
            timed["torch dense (cpu)"] = best_of(
                lambda a=a, s2=s2: torch_dense(x, X, a, s2), repeats
            )
        rows += _rows(
            "score engine (denoiser)",
            f"t = {t:g}",
            timed,
            "numpy dense (float32)",
            oracle.denoise(x, t),
        )
    return rows


def bench_nearest(s: Sizes, repeats: int, rng: np.random.Generator) -> list[Row]:
    X = rng.standard_normal((s.n, s.dim), dtype=np.float32)
    Q = rng.standard_normal((s.m, s.dim), dtype=np.float32)
    Q[: min(16, s.m)] = X[: min(16, s.m)]  # copies: exact distance 0
    timed = {
        "numpy reference": best_of(lambda: nearest(Q, X, s.k, backend="numpy").distances, repeats),
        "mixscore cpu": best_of(lambda: nearest(Q, X, s.k).distances, repeats),
    }
    if importlib.util.find_spec("faiss") is not None:
        import faiss

        index = faiss.IndexFlatL2(s.dim)
        index.add(X)
        timed["faiss IndexFlatL2"] = best_of(
            lambda: np.sqrt(np.maximum(index.search(Q, s.k)[0], 0)), repeats
        )
    if importlib.util.find_spec("sklearn") is not None:
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=s.k, algorithm="brute").fit(X)
        timed["scikit-learn brute"] = best_of(lambda: nn.kneighbors(Q)[0], repeats)
    return _rows("nearest (exact k-NN)", f"k = {s.k}", timed, "numpy reference")


def bench_sampler(s: Sizes, repeats: int, rng: np.random.Generator) -> list[Row]:
    X = rng.standard_normal((min(s.n, 2000), s.dim)).astype(np.float32)
    sch = VP()
    grid = sch.grid(s.steps)
    k = min(s.numpy_steps, s.steps)
    kw = dict(sampler="ddpm", seed=0, progress=False)
    fused_t, fused = best_of(lambda: sample(EmpiricalScore(X, sch), s.m, grid=grid, **kw), repeats)
    ref = EmpiricalScore(X, sch, backend="numpy")
    np_t, np_res = best_of(lambda: sample(ref, s.m, grid=grid[: k + 1], **kw), 1)
    part = sample(EmpiricalScore(X, sch), s.m, grid=grid[: k + 1], **kw)
    diff = float(np.max(np.abs(part.samples.astype(np.float64) - np_res.samples)))
    np_t *= s.steps / k
    case = f"{s.steps} ddpm steps"
    return [
        Row(
            "sampler",
            case,
            f"python loop, numpy reference (x{s.steps / k:.3g} from {k} steps)",
            np_t,
            1.0,
            0.0,
        ),
        Row(
            "sampler",
            case,
            "mixscore fused (one C++ call)",
            fused_t,
            np_t / fused_t,
            diff if np.isfinite(fused.samples).all() else float("inf"),
        ),
    ]


TABLES = {"score": bench_score, "nearest": bench_nearest, "sampler": bench_sampler}


def run(which=tuple(TABLES), sizes: Sizes = QUICK, repeats: int = 3, seed: int = 0) -> dict:
    """Run the chosen tables; returns {"machine": ..., "sizes": ..., "rows": [Row as dict]}."""
    from . import __version__, _core

    rng = np.random.default_rng(seed)
    rows = []
    for name in which:
        rows += TABLES[name](sizes, repeats, rng)
    machine = (
        f"{platform.processor() or platform.machine()}, engine isa {_core.isa()}, "
        f"{_core.max_threads()} threads, mixscore {__version__}"
    )
    return {
        "machine": machine,
        "sizes": asdict(sizes),
        "repeats": repeats,
        "rows": [asdict(r) for r in rows],
    }


def format_tables(result: dict) -> str:
    """Markdown tables, one per benchmark."""
    s = result["sizes"]
    lines = [
        f"machine: {result['machine']}",
        f"sizes: M = {s['m']}, N = {s['n']}, D = {s['dim']}; best of {result['repeats']}",
        "ratio = NumPy reference seconds / seconds (same run; > 1 is faster); max abs diff = "
        "largest difference from the float64 reference's answer",
    ]
    tables: dict[str, list] = {}
    for r in result["rows"]:
        tables.setdefault(r["table"], []).append(r)
    for name, rows in tables.items():
        lines += [
            "",
            f"### {name}",
            "",
            "| case | runner | seconds | ratio | max abs diff |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['case']} | {r['runner']} | {r['seconds']:.4f} | "
            f"{r['vs_numpy']:.2f}x | {r['max_diff']:.2g} |"
            for r in rows
        ]
    return "\n".join(lines)
