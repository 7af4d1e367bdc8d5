"""mixscore: exact scores of the empirical distribution for diffusion-model research."""

from . import analysis, datasets, geometry, regularizers, system, twosample
from .backends import available as available_backends
from .continuous import CircleData, GaussianData, LineNormalData
from .empirical import EmpiricalScore, ScoreStats
from .memorization import MemorizationReport, memorization
from .nearest import NearestIndex, Neighbors, nearest
from .partial import NeighborsPartial, PosteriorPartial, merge
from .sampling import SampleResult, sample
from .schedules import (
    EDM,
    OU,
    VE,
    VP,
    Brownian,
    Cosine,
    Custom,
    ExpDiffusionVE,
    Schedule,
)
from .system import info

__version__ = "0.1.0"


def __getattr__(name: str):
    """``mixscore.torch`` is imported on first use, so ``import mixscore`` never imports torch."""
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'mixscore' has no attribute {name!r}")


__all__ = [
    "EmpiricalScore", "ScoreStats", "Schedule", "VP", "OU", "VE", "ExpDiffusionVE", "Brownian",
    "EDM", "Cosine", "Custom", "available_backends", "sample", "SampleResult", "datasets",
    "system", "info", "nearest", "NearestIndex", "Neighbors", "memorization",
    "MemorizationReport", "geometry", "merge", "PosteriorPartial", "NeighborsPartial",
    "regularizers", "analysis", "twosample", "GaussianData", "CircleData", "LineNormalData",
    "__version__",
]
