"""PyTorch integration (optional: ``pip install "mixscore[torch]"``).

- :func:`targets` / :func:`dsm_floor`: exact denoising targets (denoised, score, eps, v) and the
  per-sample DSM loss floor for a batch of tensors, as constants for autograd.
- :func:`as_score`: a network ``net(x, t)`` as a score for ``mixscore.sample`` (same grids,
  Philox noise and seeds as the exact score).
- :func:`as_module`: the exact score as a ``torch.nn.Module``.
- :func:`memorization_monitor`: sample a network with fixed seeds and report memorization.

CPU tensors cross into the engine without copies (DLPack); results come back on the caller's
device and dtype. With a model whose training set is on the GPU (``EmpiricalScore(X.cuda(),
schedule)``) a CUDA batch stays there; a model on host data takes CUDA tensors with
``to_cpu=True`` (a copy to the CPU and back).
"""

try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised without torch installed
    raise ImportError('mixscore.torch needs PyTorch: pip install "mixscore[torch]"') from e

from .adapter import NetworkScore, as_score
from .monitor import MonitorResult, memorization_monitor
from .targets import PARAMETRIZATIONS, ExactScoreModule, Targets, as_module, dsm_floor, targets

__all__ = [
    "targets",
    "dsm_floor",
    "Targets",
    "as_score",
    "NetworkScore",
    "as_module",
    "ExactScoreModule",
    "memorization_monitor",
    "MonitorResult",
    "PARAMETRIZATIONS",
]
