"""GPU ratio table from one run: mixscore's cuda backend and array-API fallback (on CUDA torch
tensors) against a dense float32 PyTorch denoiser (M x N logits, softmax, product; TF32 off),
torch.nn.functional.scaled_dot_product_attention used as the score (queries x, keys and values
X, scale alpha / sigma^2, bias -alpha^2 |X_n|^2 / (2 sigma^2)), and pykeops if installed.

mixscore cuda runs with each logits product: "auto" (float32 SIMT, float64 where the float32
bound would refine everything), "float64" (tensor cores) and the opt-in "3xtf32".

Per row: best-of time, achieved TFLOP/s counting the 4 M N D flops of the two products, that as
a percentage of this card's float32 peak measured in the same run (the FMA rate of
mixscore._cuda.fp32_fma_peak when built, else torch.matmul of two 8192^2 float32 matrices with
TF32 off; both are printed), the ratio to the dense float32 torch denoiser, peak GPU memory of
the call (torch.cuda.max_memory_allocated, which does not see CuPy's pool), and the largest
denoiser error against a float64 dense reference on the first 64 queries.

    python bench/gpu_compare.py [--quick] [--time-limit 280] [--json out.json]
    python bench/gpu_compare.py --device cpu --quick      # a smoke run without a GPU

--quick (D in {2, 64, 784, 3072, 12288}, N = 20000, M = 256) is sized to finish within its
time limit (default 280 s) on an H100 / H200; cases left when the limit is reached are listed
as skipped. Without --quick N goes up to 100,000 (M = 1024). Needs torch; pykeops optional.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time

import mixscore as ms
import torch
from mixscore.benchmarks import best_of

DIMS = (2, 64, 784, 3072, 12288)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats):
    """(best seconds, result, peak bytes of one call or None) with the device synchronized."""

    def call():
        out = fn()
        sync(device)
        return out

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    seconds, out = best_of(call, repeats)
    peak = torch.cuda.max_memory_allocated(device) - base if device.type == "cuda" else None
    return seconds, out, peak


def fma_peak(device) -> float | None:
    """The card's float32 FMA rate from mixscore._cuda (None without it)."""
    if device.type != "cuda":
        return None
    try:
        from mixscore import _cuda
    except ImportError:
        return None
    return _cuda.fp32_fma_peak()


def matmul_peak(device) -> float:
    """Measured float32 matmul FLOP/s (TF32 off)."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.backends.cuda.matmul.allow_tf32 = False
    seconds, _, _ = timed(lambda: a @ b, device, 5)
    return 2.0 * n**3 / seconds


def dense_torch(x, X, alpha, sigma2):
    """The hand-rolled exact denoiser in float32: M x N logits, softmax, product."""
    logits = (alpha * (x @ X.T) - 0.5 * alpha**2 * (X * X).sum(1)) / sigma2
    return torch.softmax(logits, dim=1) @ X


def sdpa(x, X, alpha, sigma2):
    """scaled_dot_product_attention as the denoiser: softmax(alpha x.X / s2 + bias) X."""
    bias = (-0.5 * alpha**2 / sigma2) * (X * X).sum(1)[None, :].expand(x.shape[0], -1)
    return torch.nn.functional.scaled_dot_product_attention(
        x[None], X[None], X[None], attn_mask=bias[None], scale=alpha / sigma2
    )[0]


def keops(x, X, alpha, sigma2):
    from pykeops.torch import LazyTensor

    d2 = ((LazyTensor(x[:, None, :]) - alpha * LazyTensor(X[None, :, :])) ** 2).sum(-1)
    return (-d2 / (2.0 * sigma2)).sumsoftmaxweight(LazyTensor(X[None, :, :]), axis=1)


def reference(x, X, alpha, sigma2):
    """float64 dense denoiser of the first 64 queries (the accuracy yardstick)."""
    xd, Xd = x[:64].double(), X.double()
    d2 = (xd * xd).sum(1)[:, None] - 2 * alpha * xd @ Xd.T + alpha**2 * (Xd * Xd).sum(1)
    return torch.softmax(-d2 / (2 * sigma2), dim=1) @ Xd


_REPORTED = set()


MIXSCORE_RUNNERS = {  # runner name: EmpiricalScore options
    "mixscore cuda": {"backend": "cuda"},
    "mixscore cuda f64": {"backend": "cuda", "products": "float64"},
    "mixscore cuda 3xtf32": {"backend": "cuda", "products": "3xtf32"},
    "mixscore cupy": {"backend": "cupy"},
}


def runners(device, X, sde):
    """The dense torch denoiser first (the ratios' denominator), then mixscore and peers."""
    out = {"dense torch fp32": lambda x, t, a, s2: dense_torch(x, X, a, s2)}
    for name, options in MIXSCORE_RUNNERS.items():
        try:
            model = ms.EmpiricalScore(X, sde, **options)
        except (RuntimeError, ImportError, ValueError) as e:
            if name not in _REPORTED:  # once per run
                print(f"# {name}: not run ({e})")
                _REPORTED.add(name)
            continue
        out[name] = lambda x, t, a, s2, m=model: m.denoise(x, t)
    out["torch sdpa fp32"] = lambda x, t, a, s2: sdpa(x, X, a, s2)
    if importlib.util.find_spec("pykeops") is not None:
        out["pykeops"] = lambda x, t, a, s2: keops(x, X, a, s2)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke run)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--dims", type=int, nargs="+", default=list(DIMS))
    p.add_argument("--ns", type=int, nargs="+", default=None)
    p.add_argument("--m", type=int, default=None)
    p.add_argument("--t", type=float, default=0.05, help="VP time of the queries")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--time-limit", type=float, default=280.0, help="seconds for all cases")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to torch: run with --device cpu for a smoke run")
    small = device.type == "cpu"
    m = args.m or (32 if small else 256 if args.quick else 1024)
    ns = args.ns or ([1000] if small else [20000] if args.quick else [10000, 100000])
    torch.backends.cuda.matmul.allow_tf32 = False
    mm_peak, fma = matmul_peak(device), fma_peak(device)
    peak = fma or mm_peak
    fma_text = "not measured" if fma is None else f"{fma / 1e12:.2f} TFLOP/s"
    print(
        f"# device {torch.cuda.get_device_name(device) if not small else 'cpu'}; "
        f"fp32 FMA peak {fma_text}; fp32 matmul (torch, TF32 off) {mm_peak / 1e12:.2f} "
        f"TFLOP/s; % peak below is of {'the FMA peak' if fma else 'the matmul rate'}; "
        f"M = {m}, t = {args.t}"
    )
    sde = ms.VP()
    a, s2 = float(sde.alpha(args.t)), float(sde.sigma2(args.t))
    start, rows, skipped = time.perf_counter(), [], []
    header = f"{'D':>6} {'N':>7} {'runner':<22} {'seconds':>9} {'TFLOP/s':>8} {'% peak':>7} "
    print(header + f"{'vs dense':>9} {'peak MB':>8} {'max err':>9}")
    for n in ns:
        for d in args.dims:
            if time.perf_counter() - start > args.time_limit:
                skipped.append((d, n))
                continue
            g = torch.Generator(device="cpu").manual_seed(d * 7 + n)
            X = torch.randn(n, d, generator=g).to(device)
            x = a * X[torch.randint(0, n, (m,), generator=g).to(device)] + (
                s2**0.5 * torch.randn(m, d, generator=g).to(device)
            )
            ref = reference(x, X, a, s2)
            dense_s = None
            for name, fn in runners(device, X, sde).items():
                if time.perf_counter() - start > args.time_limit:
                    skipped.append((d, n, name))
                    continue
                try:
                    sec, out, mem = timed(
                        lambda f=fn, x=x: f(x, args.t, a, s2), device, args.repeats
                    )
                except (RuntimeError, ValueError) as e:  # e.g. out of memory, unsupported
                    print(f"{d:>6} {n:>7} {name:<22} failed: {str(e).splitlines()[0][:60]}")
                    continue
                if name == "dense torch fp32":
                    dense_s = sec
                err = float((out[:64].double() - ref).abs().max())
                tflops = 4.0 * m * n * d / sec / 1e12
                row = {
                    "D": d,
                    "N": n,
                    "M": m,
                    "runner": name,
                    "seconds": sec,
                    "tflops": tflops,
                    "pct_peak": 100 * tflops * 1e12 / peak,
                    "peak_bytes": mem,
                    "max_err": err,
                }
                rows.append(row)
                vs = "" if dense_s is None else f"{dense_s / sec:.2f}x"
                mb = "" if mem is None else f"{mem / 2**20:.0f}"
                print(
                    f"{d:>6} {n:>7} {name:<22} {sec:>9.4f} {tflops:>8.2f} "
                    f"{row['pct_peak']:>6.1f}% {vs:>9} {mb:>8} {err:>9.2e}"
                )
    if skipped:
        print(f"# time limit {args.time_limit} s reached; skipped: {skipped}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"peak_flops": peak, "fma_peak": fma, "matmul_peak": mm_peak, "rows": rows,
                 "skipped": skipped},
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
