"""Exact denoising targets and the DSM loss floor for a batch of torch tensors, and the exact
score as a ``torch.nn.Module`` (SCIENCE.md sections 1 and 4)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .._validation import as_times
from ..empirical import EmpiricalScore, ScoreStats
from ..regularizers import check_unsmoothed
from ._convert import check_dtype, times, to_numpy, to_tensor

#: network parametrizations and the target field each one regresses on
PARAMETRIZATIONS = {"eps": "eps", "x0": "denoised", "score": "score", "v": "v"}


@dataclass
class Targets:
    """Exact targets at (x_t, t), each shaped like x_t, on its device and dtype, without grad.

    denoised  posterior mean E[X_0 | x_t] (x0-prediction; the CEM target)
    score     grad log p_t(x_t) = (alpha denoised - x_t) / sigma^2
    eps       noise prediction (x_t - alpha denoised) / sigma
    v         v-prediction alpha eps - sigma denoised
    """

    denoised: torch.Tensor
    score: torch.Tensor
    eps: torch.Tensor
    v: torch.Tensor


def check_parametrization(parametrization: str) -> str:
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(
            f"parametrization must be one of {list(PARAMETRIZATIONS)}, got {parametrization!r}"
        )
    return PARAMETRIZATIONS[parametrization]


def _queries(model, x_t: torch.Tensor, t, to_cpu: bool, zero_ok: bool = False):
    """x_t as an (m, D) array (any trailing shape with D values per sample) and t per sample.
    For a model kept on a device (a training set on the GPU) the batch stays a tensor: the
    backend reads it where it is, no host copy."""
    if not isinstance(model, EmpiricalScore):
        raise TypeError(f"model must be a mixscore.EmpiricalScore, got {type(model).__name__}")
    if model._native and isinstance(x_t, torch.Tensor):
        check_dtype(x_t.dtype, "x_t")
        x = x_t.detach()
    else:
        x = to_numpy(x_t, "x_t", to_cpu=to_cpu)
    if x.ndim < 1 or x.shape[0] == 0 or math.prod(x.shape[1:]) != model.dim:
        raise ValueError(
            f"x_t must have shape (batch, ...) with {model.dim} values per sample "
            f"(the training data's dimension), got shape {tuple(x_t.shape)}"
        )
    m = x.shape[0]
    ts = times(t, m)
    as_times(ts, model.schedule.T, zero_ok=zero_ok)
    return x.reshape(m, model.dim), np.broadcast_to(np.asarray(ts, np.float64), (m,))[:, None]


def _per_sample(values: np.ndarray, like) -> np.ndarray | torch.Tensor:
    """Per-sample numbers (m, 1) as a float64 column next to ``like`` (NumPy or a tensor)."""
    if isinstance(like, np.ndarray):
        return values
    return torch.as_tensor(values, dtype=torch.float64, device=like.device)


def _float64(a):
    return a.astype(np.float64) if isinstance(a, np.ndarray) else a.to(torch.float64)


def targets(model: EmpiricalScore, x_t: torch.Tensor, t, *, to_cpu: bool = False) -> Targets:
    """The exact denoiser, score, eps and v targets of the training set for the batch ``x_t``.

    Regressing a network on these instead of the single noisy target (x_0, or the drawn
    noise) keeps the optimum and removes the target's variance (SCIENCE.md section 1). The
    results are constants for autograd: gradients of a loss against them flow into the
    network only.

    Parameters
    ----------
    model : EmpiricalScore
        The exact score of the training set under the forward schedule.
    x_t : torch.Tensor
        Noised batch, shape (batch, ...) with D values per sample, float32 or float64: a CPU
        tensor, or a CUDA tensor where the model's training set is on the GPU (the batch
        and the results then stay there).
    t : float, or tensor / array of shape (batch,)
        Times of the schedule, in (0, T] ([0, T] for a model whose regularizer keeps the
        score bounded, as ``model.score`` accepts).
    to_cpu : bool
        Allow a CUDA ``x_t`` with a model on host data by copying it to the CPU (the results
        go back to its device).
    """
    x, ts = _queries(model, x_t, t, to_cpu, zero_ok=model._bounded)
    st = model.stats(x, ts[:, 0], include=("denoised", "score", "eps"))
    st = _tensors(st) if model._native else st
    alpha, sigma = (_per_sample(f(ts), st.eps) for f in (model.schedule.alpha,
                                                           model.schedule.sigma))
    v = alpha * _float64(st.eps) - sigma * _float64(st.denoised)

    def back(a):
        return to_tensor(a, x_t.device, x_t.dtype).reshape(x_t.shape)

    return Targets(denoised=back(st.denoised), score=back(st.score), eps=back(st.eps), v=back(v))


def dsm_floor(
    model: EmpiricalScore,
    x_t: torch.Tensor,
    t,
    parametrization: str = "eps",
    *,
    reduction: str = "sum",
    to_cpu: bool = False,
) -> torch.Tensor:
    """Per-sample floor of the denoising score-matching loss at the batch ``x_t``.

    The DSM loss of sample i is |net(x_t) - target|^2 with target x_0, the drawn noise, the
    conditional score -(x_t - alpha x_0)/sigma^2 or alpha eps - sigma x_0. Its expectation over
    the training point given x_t splits into |net(x_t) - exact target|^2 plus the posterior
    variance of the target, which no network can remove. That floor is tau2 = tr Cov_w(X_0)
    times (d target / d x_0)^2: 1 (x0), alpha^2 / sigma^2 (eps), alpha^2 / sigma^4 (score;
    this is tr C of the generalization-through-variance paper, Eq. 34, whose DSM floor is
    J1 = J0 + 1/2 E[lambda_t tr C], Eq. 24) and (alpha^2 + sigma^2)^2 / sigma^2 (v).

    ``reduction="sum"`` sums over the D values of a sample (the squared norm);
    ``"mean"`` divides by D (``torch.nn.functional.mse_loss(..., reduction="none")`` averaged
    per sample). Returns a (batch,) tensor on ``x_t``'s device and dtype, without grad.
    """
    check_parametrization(parametrization)
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    check_unsmoothed(model, "dsm_floor")
    x, ts = _queries(model, x_t, t, to_cpu)
    tau2 = model.stats(x, ts[:, 0], include=("tau2",)).tau2
    tau2 = _tensors(tau2) if model._native else np.asarray(tau2, np.float64)
    a2, s2 = model.schedule.alpha(ts[:, 0]) ** 2, model.schedule.sigma2(ts[:, 0])
    factor = {"x0": np.ones_like(a2), "eps": a2 / s2, "score": a2 / (s2 * s2),
              "v": (a2 + s2) ** 2 / s2}[parametrization]
    floor = tau2 * _per_sample(factor, tau2) / (model.dim if reduction == "mean" else 1)
    return to_tensor(floor, x_t.device, x_t.dtype)


def _tensors(a):
    """Results of a model kept on a device as torch tensors there (a CuPy model's through
    DLPack, no copy); a ``ScoreStats`` field by field."""
    if isinstance(a, torch.Tensor) or a is None:
        return a
    if isinstance(a, ScoreStats):
        return ScoreStats(**{k: _tensors(v) for k, v in a.as_dict().items()})
    return torch.from_dlpack(a)


class ExactScoreModule(torch.nn.Module):
    """The exact score of an ``EmpiricalScore`` as a module ``forward(x, t)`` returning the
    target of ``parametrization`` ("eps", "x0", "score" or "v"): a drop-in for a network, to
    check a training or sampling pipeline against the optimum."""

    def __init__(self, model: EmpiricalScore, parametrization: str = "eps"):
        super().__init__()
        if not isinstance(model, EmpiricalScore):
            raise TypeError(f"model must be a mixscore.EmpiricalScore, got {type(model).__name__}")
        self.model = model
        self.parametrization = parametrization
        self._field = check_parametrization(parametrization)

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        return getattr(targets(self.model, x, t), self._field)

    def extra_repr(self) -> str:
        return f"{self.model!r}, parametrization={self.parametrization!r}"


def as_module(model: EmpiricalScore, parametrization: str = "eps") -> ExactScoreModule:
    """The exact score wrapped as a ``torch.nn.Module`` (see :class:`ExactScoreModule`)."""
    return ExactScoreModule(model, parametrization)
