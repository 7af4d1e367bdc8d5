"""Backends implement the protocol of ``backends.base`` and declare their capabilities
(``stats``, ``partial``, ``fused_sample``, ``draws``, ``device_sample`` for scores; ``search``
for nearest neighbours).

``numpy``  the readable float64 references, score and nearest side by side (the test oracle);
``cpu``    the C++ engine (mixscore._core);
``cupy``   (alias ``array_api``) the array-API fallback: NumPy, torch or CuPy arrays where they
           live (``arrayapi.py``; needs array-api-compat);
``cuda``   the CUDA kernels (mixscore._cuda, built when nvcc is found; ``cuda.py``).
"""

from __future__ import annotations

import importlib
import warnings

from .base import (
    COV_NOISE,
    DEVICE_SAMPLE,
    DRAWS,
    FUSED_SAMPLE,
    PARTIAL,
    SEARCH,
    STATS,
    NearestBackend,
    ScoreBackend,
    has,
)

STAT_NAMES = ("logpdf", "denoised", "score", "eps", "tau2", "max_weight", "argmax", "n_eff")
VECTOR_STATS = ("denoised", "score", "eps")


def available() -> list[str]:
    names = ["numpy"]
    try:
        from .. import _core  # noqa: F401

        names.insert(0, "cpu")
    except ImportError:
        pass
    return names


# (what, backend name) -> (module, class)
_CLASSES = {
    ("score", "cpu"): ("cpu", "CpuBackend"),
    ("score", "numpy"): ("numpy_ref", "NumpyBackend"),
    ("nearest", "cpu"): ("nearest_cpu", "CpuNearest"),
    ("nearest", "numpy"): ("numpy_ref", "NumpyNearest"),
    ("score", "cupy"): ("arrayapi", "ArrayApiBackend"),
    ("score", "array_api"): ("arrayapi", "ArrayApiBackend"),
    ("score", "cuda"): ("cuda", "CudaBackend"),
}
NAMES = ("auto", "cpu", "numpy", "cupy", "array_api", "cuda")


def device_backend(like) -> str | None:
    """'cuda' (the kernels, when built and a GPU is visible) or 'cupy' (the array-API
    fallback) for a CuPy array or CUDA torch tensor ``like``; None for host data."""
    from ._xp import on_gpu

    if not on_gpu(like):
        return None
    from .cuda import cuda_problem

    return "cuda" if cuda_problem() is None else "cupy"


def keeps_arrays(name: str, train) -> bool:
    """Whether a model with backend ``name`` keeps ``train`` (a torch / CuPy array) in its
    library and device: the array-API and cuda backends, and 'auto' for GPU arrays."""
    from ._xp import is_foreign, on_gpu

    if not is_foreign(train):
        return False
    return name in ("cupy", "array_api", "cuda") or (name == "auto" and on_gpu(train))


def get_backend(name: str, what: str = "score", like=None):
    """The backend class for ``name`` (one of ``NAMES``); ``what`` is 'score' (the mixture
    statistics) or 'nearest' (exact nearest-neighbour search). 'auto' picks by where ``like``
    (the training set) lives: GPU arrays get ``device_backend``, host data the cpu engine."""
    if name == "auto" and what == "score" and like is not None:
        name = device_backend(like) or name
    if name == "auto":
        if "cpu" in available():
            name = "cpu"
        else:
            warnings.warn("mixscore: the C++ extension is not available; falling back to the "
                          "slow NumPy reference backend", RuntimeWarning, stacklevel=4)
            name = "numpy"
    if (what, name) not in _CLASSES:
        names = NAMES if what == "score" else NAMES[:3]
        raise ValueError(f"backend must be one of {', '.join(map(repr, names))}, "
                         f"got {name!r}")
    module, cls = _CLASSES[(what, name)]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


__all__ = ["STAT_NAMES", "VECTOR_STATS", "available", "get_backend", "ScoreBackend",
           "NearestBackend", "has", "STATS", "PARTIAL", "FUSED_SAMPLE", "DRAWS",
           "DEVICE_SAMPLE", "COV_NOISE", "SEARCH", "NAMES", "keeps_arrays", "device_backend"]
