"""A PyTorch network as a score for ``mixscore.sample``: the sampler keeps its grids, Philox
noise and seeds, so a network and the exact score can be compared step by step."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ..schedules import Schedule
from ._convert import ENGINE_DTYPES, check_dtype
from .targets import check_parametrization

TIME_INPUTS = ("t", "sigma")


def _module_place(net, device, dtype):
    """The device and dtype of the module's first parameter or buffer, unless given."""
    first = next(iter(net.parameters()), None) if isinstance(net, torch.nn.Module) else None
    if first is None and isinstance(net, torch.nn.Module):
        first = next(iter(net.buffers()), None)
    if device is None and first is not None:
        device = first.device
    if dtype is None and first is not None and first.is_floating_point():
        dtype = first.dtype
    return (None if device is None else torch.device(device)), dtype


class NetworkScore:
    """``score(x, t)`` on NumPy arrays for ``mixscore.sample``, evaluating ``net`` in batches
    under ``torch.no_grad()``. Made by :func:`as_score`; its ``schedule``, ``output`` and
    ``dim`` attributes are what ``mixscore.sample`` uses by default."""

    def __init__(
        self,
        net: Callable,
        parametrization: str,
        schedule: Schedule,
        time_input,
        sample_shape,
        batch_size,
        device,
        dtype,
    ):
        self.net, self.schedule, self.parametrization = net, schedule, parametrization
        self.output = check_parametrization(parametrization)  # the sampler's output= kind
        self.time_input = time_input
        self.sample_shape = sample_shape
        self.dim = None if sample_shape is None else math.prod(sample_shape)
        self.batch_size = batch_size
        self.device, self.dtype = _module_place(net, device, dtype)
        self.name = type(net).__name__

    def __repr__(self) -> str:
        return (
            f"NetworkScore({self.name}, parametrization={self.parametrization!r}, "
            f"schedule={self.schedule!r}, time_input={self.time_input!r})"
        )

    def _inputs(self, x: np.ndarray, t):
        """The network's frame: (x, t) or, for ``time_input="sigma"``, the k-diffusion frame
        x / alpha at noise level sigma / alpha (where alpha = 1 nothing changes)."""
        ts = np.broadcast_to(np.asarray(t, np.float64), (x.shape[0],))
        if self.time_input == "t":
            return x, ts, None
        if self.time_input == "sigma":
            alpha = self.schedule.alpha(ts)
            return x / alpha[:, None], self.schedule.sigma(ts) / alpha, alpha[:, None]
        return x, np.asarray(self.time_input(ts), np.float64).reshape(-1), None

    def _check(self, y, xb: torch.Tensor, t0: float) -> None:
        what = f"the output of {self.name} (as_score, parametrization={self.parametrization!r})"
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"{what} is a {type(y).__name__}; expected a torch.Tensor")
        if y.shape != xb.shape:
            raise ValueError(
                f"{what} has shape {tuple(y.shape)} for an input of shape "
                f"{tuple(xb.shape)} at t = {t0:.6g}; expected the input's shape"
            )
        check_dtype(y.dtype, what)
        if not bool(torch.isfinite(y).all()):
            raise ValueError(
                f"{what} contains NaN or Inf at t = {t0:.6g} (input shape {tuple(xb.shape)})"
            )

    def __call__(self, x: np.ndarray, t) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"x must have shape (m, D), got shape {x.shape}")
        m, d = x.shape
        xin, tin, alpha = self._inputs(x, t)
        shape = (d,) if self.sample_shape is None else tuple(self.sample_shape)
        if math.prod(shape) != d:
            raise ValueError(
                f"sample_shape {shape} has {math.prod(shape)} values, the sampler's states have {d}"
            )
        device = torch.device("cpu") if self.device is None else self.device
        dtype = self.dtype or (torch.float64 if x.dtype == np.float64 else torch.float32)
        batch = m if self.batch_size is None else self.batch_size
        out = np.empty((m, d), np.float64)
        with torch.no_grad():
            for b0 in range(0, m, batch):
                b1 = min(m, b0 + batch)
                # (np.array: a writable copy; a broadcast time column is a read-only view)
                xb = torch.from_numpy(np.array(xin[b0:b1])).to(device, dtype)
                xb = xb.reshape(b1 - b0, *shape)
                tb = torch.from_numpy(np.array(tin[b0:b1])).to(device, dtype)
                y = self.net(xb, tb)
                self._check(y, xb, float(tin[b0]))
                out[b0:b1] = y.reshape(b1 - b0, d).to("cpu", torch.float64).numpy()
        if alpha is not None and self.output == "score":
            out /= alpha  # grad over x = (grad over x / alpha) / alpha
        elif alpha is not None and self.output == "v":
            out *= alpha  # v = alpha eps - sigma x0 = alpha (eps - (sigma / alpha) x0)
        return out


def as_score(
    net: Callable,
    parametrization: str = "eps",
    *,
    schedule: Schedule,
    time_input: str | Callable = "t",
    sample_shape: tuple[int, ...] | int | None = None,
    batch_size: int | None = None,
    device=None,
    dtype=None,
) -> NetworkScore:
    """Turn a network ``net(x, t)`` into a score for ``mixscore.sample``.

    ``ms.sample(as_score(net, "eps", schedule=sde, sample_shape=(64,)), n=256, seed=0)`` runs
    the same grid, start and Philox noise as ``ms.sample`` on the exact score with the same
    seed, so the two trajectories can be compared step by step.

    Parameters
    ----------
    net : torch.nn.Module or callable
        Called as ``net(x, t)`` with x of shape (b, *sample_shape) and t of shape (b,), both on
        the network's device and dtype (its first parameter's; else CPU and the sampler's
        dtype), under ``torch.no_grad()``; must return a tensor shaped like x. The module's
        train/eval mode is left as it is.
    parametrization : {"eps", "x0", "score", "v"}
        What the network predicts: the noise, the clean data (denoiser), the score or
        v = alpha eps - sigma x0.
    schedule : Schedule
        The forward schedule the network was trained with.
    time_input : "t", "sigma" or callable
        What the network gets as its second argument: the schedule time t; ``"sigma"``, a
        k-diffusion / EDM style denoiser ``net(x / alpha, sigma / alpha)`` (the same as
        ``net(x, sigma)`` for alpha = 1, with outputs of that frame converted back); or a
        function of the float64 times, e.g. ``lambda t: 999 * t`` for discrete timesteps.
    sample_shape : tuple of int, optional
        Shape of one sample for the network, e.g. (1, 8, 8); the sampler works on flat states.
        Also gives ``mixscore.sample`` its ``dim``. Default: flat (D,).
    batch_size : int, optional
        Largest batch passed to the network at once (memory); results do not depend on it.
    device, dtype
        Override where and in which dtype the network is evaluated.
    """
    if not callable(net):
        raise TypeError(
            f"net must be a torch.nn.Module or a callable net(x, t), got {type(net).__name__}"
        )
    check_parametrization(parametrization)
    if not isinstance(schedule, Schedule):
        raise TypeError(
            f"schedule must be a mixscore Schedule (e.g. mixscore.VP()), got "
            f"{type(schedule).__name__}"
        )
    if not (callable(time_input) or time_input in TIME_INPUTS):
        raise ValueError(
            f"time_input must be one of {TIME_INPUTS} or a callable, got {time_input!r}"
        )
    if sample_shape is not None:
        sample_shape = (sample_shape,) if isinstance(sample_shape, int) else tuple(sample_shape)
        if not sample_shape or any(int(s) < 1 for s in sample_shape):
            raise ValueError(f"sample_shape must be positive ints, got {sample_shape}")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if dtype is not None and dtype not in ENGINE_DTYPES:
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return NetworkScore(
        net,
        parametrization,
        schedule,
        time_input,
        sample_shape,
        None if batch_size is None else int(batch_size),
        device,
        dtype,
    )
