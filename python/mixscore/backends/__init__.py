"""Backends implement the protocol of ``backends.base`` and declare their capabilities
(``stats``, ``partial``, ``fused_sample`` for scores; ``search`` for nearest neighbours).

``numpy``  the readable float64 references, score and nearest side by side (the test oracle);
``cpu``    the C++ engine (mixscore._core).
"""

from __future__ import annotations

import importlib
import warnings

from .base import DRAWS, FUSED_SAMPLE, PARTIAL, SEARCH, STATS, NearestBackend, ScoreBackend, has

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
}


def get_backend(name: str, what: str = "score"):
    """The backend class for ``name`` ('auto', 'cpu' or 'numpy'); ``what`` is 'score' (the
    mixture statistics) or 'nearest' (exact nearest-neighbour search)."""
    if name == "auto":
        if "cpu" in available():
            name = "cpu"
        else:
            warnings.warn("mixscore: the C++ extension is not available; falling back to the "
                          "slow NumPy reference backend", RuntimeWarning, stacklevel=4)
            name = "numpy"
    if (what, name) not in _CLASSES:
        raise ValueError(f"backend must be 'auto', 'cpu' or 'numpy', got {name!r}")
    module, cls = _CLASSES[(what, name)]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


__all__ = ["STAT_NAMES", "VECTOR_STATS", "available", "get_backend", "ScoreBackend",
           "NearestBackend", "has", "STATS", "PARTIAL", "FUSED_SAMPLE", "DRAWS", "SEARCH"]
