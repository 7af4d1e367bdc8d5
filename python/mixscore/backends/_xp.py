"""Arrays of other libraries (torch tensors, CuPy arrays) where they live: recognizing them,
their array-API namespace and device, validation without a host copy, and moving small host
arrays (per-query noise levels) to them. ``array-api-compat`` is imported only when such an
array is met (``pip install "mixscore[gpu]"``), so ``import mixscore`` never needs it."""

from __future__ import annotations

import contextlib
import os

import numpy as np

FOREIGN_LIBRARIES = ("torch", "cupy")
MISSING_COMPAT = (
    "the array-API backend needs the array-api-compat package for {what}: "
    'pip install "mixscore[gpu]" (or pip install array-api-compat)'
)


def is_foreign(a) -> bool:
    """Whether ``a`` is a torch tensor or a CuPy array (not NumPy, not a list)."""
    return type(a).__module__.partition(".")[0] in FOREIGN_LIBRARIES


def on_gpu(a) -> bool:
    """Whether ``a`` is a CuPy array or a torch tensor on a CUDA device."""
    if not is_foreign(a):
        return False
    if type(a).__module__.startswith("cupy"):
        return True
    return getattr(getattr(a, "device", None), "type", "cpu") == "cuda"


def namespace(a):
    """(xp, device) of ``a``: the array-API namespace (array-api-compat's wrapper for NumPy,
    torch and CuPy) and the device its results must stay on."""
    try:
        import array_api_compat
    except ImportError:
        raise ImportError(MISSING_COMPAT.format(what=type(a).__module__)) from None
    return array_api_compat.array_namespace(a), array_api_compat.device(a)


def describe(a) -> str:
    """Shape, dtype and device of an array of any library (for error messages)."""
    dev = getattr(a, "device", None)
    where = f" on {dev}" if dev is not None and not isinstance(a, np.ndarray) else ""
    kind = f"{type(a).__module__}.{type(a).__name__}"
    return f"{kind} of shape {tuple(a.shape)}, dtype {a.dtype}{where}"


def numpy_dtype(dtype) -> np.dtype:
    """The NumPy dtype of a torch / CuPy / NumPy dtype (float32 -> np.float32)."""
    return np.dtype(str(dtype).rpartition(".")[2])


def float_dtype(xp, dtype):
    """The namespace's float32 or float64 for a NumPy float dtype."""
    return xp.float32 if np.dtype(dtype) == np.float32 else xp.float64


def astype(xp, a, dtype):
    """``a`` cast to ``dtype`` (a NumPy dtype or the namespace's): NumPy < 2.1 has no
    ``np.astype`` and arrays of other libraries have no ``.astype`` method."""
    if isinstance(a, np.ndarray):
        return a.astype(dtype)
    if isinstance(dtype, np.dtype) or dtype in (np.float32, np.float64):
        dtype = float_dtype(xp, dtype)
    return xp.astype(a, dtype)


def as_float_matrix(a, name: str, xp, device, *, dtype=None):
    """``a`` (any library) as a 2-d float32/float64 array of namespace ``xp`` on ``device``,
    without NaN/Inf; ``dtype`` (NumPy float dtype) casts, default keeps float32/float64 and
    refuses other dtypes by name (bf16/fp16 lose too many digits for the exact score)."""
    shape, kind = tuple(a.shape), numpy_dtype(a.dtype) if hasattr(a, "dtype") else None
    if len(shape) != 2:
        raise ValueError(f"{name} must be a 2-d array (points x dimensions), got {describe(a)}")
    if dtype is None:
        if kind not in (np.float32, np.float64):
            raise TypeError(
                f"{name} must be float32 or float64 for this backend, got "
                f"{describe(a)}; cast it first (e.g. .float())"
            )
        dtype = kind
    if shape[1] == 0:
        raise ValueError(f"{name} has zero columns ({describe(a)})")
    arr = xp.asarray(a, dtype=float_dtype(xp, dtype), device=device)
    if shape[0] and not bool(xp.all(xp.isfinite(arr))):
        raise ValueError(f"{name} contains NaN or Inf ({describe(a)})")
    return arr


def magnitudes(a, spread: bool = True) -> tuple[float, float | None]:
    """(largest |value|, largest column range or None without ``spread``) of a 2-d array of
    any library, on its device (numbers to the host): ``check_magnitudes``'s inputs."""
    if not a.shape[0]:
        return 0.0, 0.0
    xp = namespace(a)[0]
    top = float(xp.max(xp.abs(a)))
    return top, float(xp.max(xp.max(a, axis=0) - xp.min(a, axis=0))) if spread else None


def to_host(a) -> np.ndarray:
    """A NumPy copy of a torch / CuPy array (only for partial states, which are host objects)."""
    if isinstance(a, np.ndarray):
        return a
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return a.detach().cpu().numpy()


def place_like(host, xp, device, dtype=None):
    """A small host array (e.g. alpha, sigma2 per query) in namespace ``xp`` on ``device``."""
    return xp.asarray(np.asarray(host), dtype=dtype, device=device)


def wide_dtype(xp, device):
    """float64 where the device has it (CPU, CUDA), float32 otherwise (e.g. Apple MPS)."""
    try:
        xp.zeros(1, dtype=xp.float64, device=device)
        return xp.float64
    except (TypeError, RuntimeError, ValueError):
        return xp.float32


@contextlib.contextmanager
def exact_float32_products(a):
    """Products in true float32 (the bound assumes unit roundoff 2^-24): TF32 off for torch
    on CUDA for the duration (restored after); CuPy's TF32 switch (CUPY_TF32=1) is read at
    its import, so it is refused here."""
    if type(a).__module__.startswith("cupy") and os.environ.get("CUPY_TF32", "0") != "0":
        raise RuntimeError(
            "CUPY_TF32 is set: CuPy would compute float32 products in TF32 (10 "
            "mantissa bits), which the exact score refuses; unset CUPY_TF32"
        )
    if not (is_foreign(a) and on_gpu(a) and type(a).__module__.startswith("torch")):
        yield
        return
    import torch

    with _tf32_off(torch.backends.cuda.matmul):
        yield


@contextlib.contextmanager
def _tf32_off(mm):
    """TF32 off for torch's cuBLAS float32 products, through the API the caller used (torch
    refuses reads of the legacy ``allow_tf32`` once the newer ``fp32_precision`` was set)."""
    try:
        legacy = mm.allow_tf32
    except RuntimeError:  # the caller uses fp32_precision
        legacy = None
    if legacy is not None:
        mm.allow_tf32 = False
    else:
        before, mm.fp32_precision = mm.fp32_precision, "ieee"
    try:
        yield
    finally:
        if legacy is not None:
            mm.allow_tf32 = legacy
        else:
            mm.fp32_precision = before
