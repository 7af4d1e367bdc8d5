"""Backends implement one protocol: ``Backend(train, weights)`` then
``backend.stats(x, alpha, sigma2, want) -> dict`` with the keys of ``STAT_NAMES`` in ``want``.

``numpy``  the readable float64-capable reference (the oracle in tests);
``cpu``    the C++ engine (mixscore._core).
"""

from __future__ import annotations

import warnings

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


def get_backend(name: str):
    """The backend class for ``name`` ('auto', 'cpu' or 'numpy')."""
    if name == "auto":
        if "cpu" in available():
            name = "cpu"
        else:
            warnings.warn("mixscore: the C++ extension is not available; falling back to the "
                          "slow NumPy reference backend", RuntimeWarning, stacklevel=3)
            name = "numpy"
    if name == "cpu":
        from .cpu import CpuBackend

        return CpuBackend
    if name == "numpy":
        from .numpy_ref import NumpyBackend

        return NumpyBackend
    raise ValueError(f"backend must be 'auto', 'cpu' or 'numpy', got {name!r}")
