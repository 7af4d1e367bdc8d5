"""Tensors across the NumPy boundary of the engine: CPU tensors go in without copies through
DLPack, results come back as tensors on the caller's device and dtype, never tracked by
autograd (the engine is a constant for the network's gradient)."""

from __future__ import annotations

import numpy as np
import torch

ENGINE_DTYPES = (torch.float32, torch.float64)
NO_GPU = (
    "this model's training set is on the host; build it from a tensor on the GPU "
    "(EmpiricalScore(X.cuda(), schedule): the GPU backend keeps the batch there), or pass "
    "to_cpu=True to copy the batch to the CPU and the results back"
)


def check_dtype(dtype: torch.dtype, what: str) -> None:
    """The engine computes in float32 or float64; anything else (bf16, fp16, ints) is refused
    with the name of what carried it."""
    if dtype not in ENGINE_DTYPES:
        raise TypeError(
            f"{what} has dtype {dtype}; mixscore computes in float32 or float64: "
            "cast it with .float() (bf16/fp16 lose too many digits for the exact "
            "score)"
        )


def to_numpy(x: torch.Tensor, name: str, *, to_cpu: bool = False) -> np.ndarray:
    """A NumPy view of a CPU tensor (DLPack, no copy) of float32/float64 values."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    check_dtype(x.dtype, name)
    if x.device.type != "cpu":
        if not to_cpu:
            raise ValueError(f"{name} is on {x.device}: {NO_GPU}")
        x = x.cpu()
    x = x.detach()
    if x.is_conj() or x.is_neg():  # lazy views DLPack cannot carry
        x = x.resolve_conj().resolve_neg()
    return np.from_dlpack(x)


def to_tensor(a, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """An engine result (NumPy, a tensor or a CuPy array of a model kept on a GPU) as a tensor
    on ``device`` with ``dtype`` (no copy when both match)."""
    if isinstance(a, torch.Tensor):
        return a.to(device=device, dtype=dtype)
    if not isinstance(a, np.ndarray):  # CuPy: zero-copy through DLPack
        return torch.from_dlpack(a).to(device=device, dtype=dtype)
    a = np.ascontiguousarray(a)
    try:
        t = torch.from_dlpack(a)
    except (BufferError, RuntimeError, TypeError):  # read-only arrays do not export
        t = torch.from_numpy(a.copy())
    return t.to(device=device, dtype=dtype)


def times(t, m: int, name: str = "t") -> np.ndarray | float:
    """A scalar time or one per sample, as a float or a float64 (m,) array."""
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().double().numpy()
    arr = np.asarray(t, dtype=np.float64)
    if arr.ndim == 0:
        return float(arr)
    arr = arr.reshape(-1)
    if arr.size == 1:
        return float(arr[0])
    if arr.size != m:
        raise ValueError(
            f"{name} must be a scalar or have one time per sample ({m},), got "
            f"shape {tuple(np.shape(t))}"
        )
    return arr
