"""What this installation can do: ``mixscore.info()`` and the ``mixscore info`` command."""

from __future__ import annotations

import importlib.util
import os
import platform

import numpy as np

from .backends import available

_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl")


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [f for f in _CPU_FLAGS if f in have]
    except OSError:
        pass
    return []


def info() -> dict:
    """Version, backends, the engine's instruction set, CPU features and threads."""
    from . import __version__

    out = {"mixscore": __version__, "python": platform.python_version(),
           "numpy": np.__version__, "platform": platform.platform(),
           "backends": available(), "cpu_features": _cpu_flags(),
           "cpu_count": os.cpu_count()}
    try:
        from . import _core

        out["engine_isa"] = _core.isa()
        out["threads"] = _core.max_threads()
    except ImportError:
        out["engine_isa"] = None
        out["threads"] = None
    out["gpu"] = gpu_status(out["backends"])
    out["optional"] = {name: importlib.util.find_spec(name) is not None
                       for name in ("scipy", "matplotlib", "tqdm", "PIL", "faiss", "sklearn",
                                    "pykeops", "torch")}
    return out


def gpu_status(backends: list[str]) -> dict:
    """What is there for GPUs and whether any of it is usable: the cuda backend needs the built
    extension and a visible device (``cuda_problem`` says what is missing); the array-API
    fallback (``backend="cupy"``) needs array-api-compat and runs on CuPy / CUDA torch arrays."""
    from .backends.cuda import cuda_problem

    problem = cuda_problem()
    gpu = [b for b in backends if b not in ("cpu", "numpy")]
    if problem is None and "cuda" not in gpu:
        gpu.append("cuda")
    return {"usable": bool(gpu), "backends": gpu, "cuda_problem": problem,
            "cuda_extension_built": importlib.util.find_spec("mixscore._cuda") is not None,
            "cupy_installed": importlib.util.find_spec("cupy") is not None,
            "array_api_fallback": importlib.util.find_spec("array_api_compat") is not None}


def format_gpu(g: dict) -> str:
    fallback = ("backend='cupy' (array-API fallback) runs on CuPy arrays and CUDA tensors"
                if g.get("array_api_fallback") else
                'backend=\'cupy\' needs pip install "mixscore[gpu]"')
    if g["usable"]:
        return f"usable: backend {', '.join(g['backends'])}; {fallback}"
    why = g.get("cuda_problem") or "no GPU backend"
    return f"backend='cuda' not usable: {why}; {fallback}"


def format_info(d: dict) -> str:
    rows = [("mixscore", d["mixscore"]), ("python", d["python"]), ("numpy", d["numpy"]),
            ("platform", d["platform"]), ("backends", ", ".join(d["backends"])),
            ("engine instruction set", d["engine_isa"] or "not built"),
            ("CPU features", " ".join(d["cpu_features"]) or "unknown"),
            ("threads (OpenMP)", f"{d['threads']} of {d['cpu_count']} CPUs"),
            ("GPU", format_gpu(d["gpu"])),
            ("optional packages", ", ".join(f"{k} {'yes' if v else 'no'}"
                                            for k, v in d["optional"].items()))]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
