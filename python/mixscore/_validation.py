"""Input checks shared by the public API: every error names the argument, what was given and
what was expected, and is raised before any work starts."""

from __future__ import annotations

import numbers
import os
import sys

import numpy as np

from . import _core

FLOAT_DTYPES = (np.float32, np.float64)


def describe(a) -> str:
    a = np.asarray(a)
    return f"shape {a.shape} and dtype {a.dtype}"


def as_plain_array(a, name: str) -> np.ndarray:
    """``np.asarray(a)``, refusing masked arrays with masked entries.

    ``np.asarray`` drops a ``numpy.ma.MaskedArray``'s mask, so masked entries would be used as
    values. mixscore does not guess whether a mask means "drop these rows" or "fill these
    values": the caller says so. A masked array with nothing masked is read as its data."""
    ma = sys.modules.get("numpy.ma")  # (not imported: no masked array exists; importing
    if ma is not None and isinstance(a, ma.MaskedArray):  # it costs 30 ms on the first call)
        masked = np.ma.getmaskarray(a)
        if masked.any():
            rows = "" if masked.ndim < 2 else f" in {int(masked.any(axis=-1).sum())} rows"
            raise ValueError(
                f"{name} is a masked array with {int(masked.sum())} masked entries{rows}; "
                f"mixscore would read masked entries as values. Drop the masked rows "
                f"({name}[~np.ma.getmaskarray({name}).any(axis=-1)]) or fill them "
                f"({name}.filled(value)) first"
            )
        a = np.ma.getdata(a)
    return np.asarray(a)


def as_float_matrix(a, name: str, *, dtype=None, allow_empty: bool = False,
                    check_finite: bool = True) -> np.ndarray:
    """A C-contiguous 2-d float32/float64 array without NaN/Inf (``check_finite=False``: the
    caller checks, e.g. through ``value_ranges``).

    Integer and boolean arrays are converted to float64 (or ``dtype``); float16 is promoted to
    float32; other kinds, and masked arrays with masked entries, are refused."""
    arr = as_plain_array(a, name)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a real numeric array, got {describe(arr)}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array (points x dimensions), got {describe(arr)}")
    if dtype is None:
        dtype = (
            arr.dtype
            if arr.dtype in FLOAT_DTYPES
            else (np.float32 if arr.dtype == np.float16 else np.float64)
        )
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty ({describe(arr)}); expected at least one row")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has zero columns ({describe(arr)})")
    if check_finite and not np.all(np.isfinite(arr)):
        _refuse_non_finite(arr, name)
    return arr


def _refuse_non_finite(arr: np.ndarray, name: str):
    bad = np.argwhere(~np.isfinite(arr))[0]
    raise ValueError(f"{name} contains NaN or Inf (first at row {bad[0]}, column {bad[1]})")


def value_ranges(arr: np.ndarray, name: str,
                 spread_limit: float = np.inf) -> tuple[float, float]:
    """(largest |value|, largest column range) of a float matrix, refusing NaN/Inf (they
    propagate into the minimum and maximum). The range is exact when below ``spread_limit``,
    otherwise some value >= it: the column reductions cost ten times the rest, and the lower
    bound from the first and last rows settles the usual case."""
    if not arr.size:
        return 0.0, 0.0
    lo, hi = arr.min(), arr.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        _refuse_non_finite(arr, name)
    spread = float(np.max(np.abs(arr[-1] - arr[0])))
    if spread < spread_limit:
        spread = float((arr.max(axis=0) - arr.min(axis=0)).max())
    return float(max(-lo, hi)), spread


def as_weights(w, n: int, name: str = "weights") -> np.ndarray:
    """Positive finite float64 weights of length n."""
    arr = as_plain_array(w, name)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be numeric, got {describe(arr)}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(
            f"{name} must have shape ({n},) (one per training point), got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf")
    if np.any(arr <= 0):
        i = int(np.argmax(arr <= 0))
        raise ValueError(
            f"{name} must be > 0 (duplicates are weights, drop unwanted points); "
            f"{name}[{i}] = {arr[i]}"
        )
    return arr


def as_times(t, T: float, *, name: str = "t", zero_ok: bool = False) -> np.ndarray:
    """Times as a float64 array, all finite and in (0, T] ([0, T] where ``zero_ok``)."""
    arr = as_plain_array(t, name)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be numeric, got {describe(arr)}")
    arr = np.asarray(arr, dtype=np.float64)
    bad = ~(np.isfinite(arr) & ((arr >= 0) if zero_ok else (arr > 0)) & (arr <= T))
    if np.any(bad):
        v = arr[bad].flat[0]
        lo = "[0" if zero_ok else "(0"
        if np.isinf(T):
            raise ValueError(f"{name} must be finite and {'>=' if zero_ok else '>'} 0; got {v!r}")
        raise ValueError(f"{name} must lie in {lo}, T] = {lo}, {T}]; got {v!r}")
    return arr


def per_query_times(t, m: int, T: float, name: str = "t", zero_ok: bool = False) -> np.ndarray:
    """A scalar time or one per query, broadcast to shape (m,)."""
    arr = as_times(t, T, name=name, zero_ok=zero_ok)
    if arr.ndim == 0:
        return np.full(m, float(arr))
    if arr.shape != (m,):
        raise ValueError(
            f"{name} must be a scalar or have shape ({m},) (one per query), got shape {arr.shape}"
        )
    return np.ascontiguousarray(arr)


def as_array(a, name: str) -> np.ndarray:
    """``a`` as a NumPy array, or an error that says what was given (a torch tensor on a GPU,
    a ragged list, ...)."""
    if isinstance(a, np.ndarray):
        return as_plain_array(a, name)  # masked arrays with masked entries are refused
    if getattr(a, "requires_grad", False):
        a = a.detach()  # a CPU tensor that requires grad: its values (no gradient flows here)
    try:
        return np.asarray(a)
    except (TypeError, ValueError, RuntimeError) as e:
        device = getattr(a, "device", None)
        where = f" on device {device}" if device is not None else ""
        raise TypeError(f"{name} must be an array-like of numbers (a NumPy array or a CPU "
                        f"tensor), got {type(a).__module__}.{type(a).__name__}{where} with "
                        f"shape {tuple(getattr(a, 'shape', ()))} ({e}); pass "
                        f"{name}.detach().cpu().numpy() for a GPU tensor") from None


def as_points(a, name: str, dim: int | None = None,
              against: str = "") -> tuple[np.ndarray, bool]:
    """The one input convention for points: (rows as an (M, D) array, single).

    Accepted: an (M, D) array; one point (D,) when ``dim`` is known and matches (``single`` is
    then True: results drop the row axis, as ``EmpiricalScore.denoise`` does); and image stacks
    (M, H, W) or (M, H, W, C) (any (M, ...)), flattened row by row to (M, H W [C]). The dtype
    and finiteness are checked by ``as_float_matrix`` afterwards. ``against`` names what fixes
    ``dim`` in error messages (e.g. "train (N = 5, D = 3)")."""
    given = arr = as_array(a, name)
    if arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)
    if arr.ndim == 0 or (arr.ndim == 1 and dim is None):
        raise ValueError(f"{name} must be a 2-d array (points x dimensions) or an image stack "
                         f"(M, ...), got {describe(arr)}")
    single = arr.ndim == 1
    if dim is not None and arr.shape[-1] != dim:
        ctx = f" to match {against}" if against else ""
        raise ValueError(f"{name} must have shape (M, {dim}){ctx} (or ({dim},) for one point, "
                         f"or an image stack with {dim} values per image), got "
                         f"{describe(given)}")
    return (arr[None, :] if single else arr), single


def check_count(value, name: str) -> int:
    """A count: an integer >= 1 (not a bool, not a float that would be truncated)."""
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)
            or value < 1):
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def check_threads(num_threads, name: str = "num_threads") -> int:
    """A thread count: an integer >= 0 (0 = OpenMP's default)."""
    if isinstance(num_threads, (bool, np.bool_)) or not isinstance(num_threads,
                                                                   (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= 0 (0 = all cores), got "
                        f"{num_threads!r} ({type(num_threads).__name__})")
    if num_threads < 0:
        raise ValueError(f"{name} must be >= 0 (0 = all cores), got {num_threads}")
    cap = max(64, 4 * (os.cpu_count() or 1))  # beyond: thread creation fails, no speed-up
    if num_threads > cap:
        raise ValueError(f"{name} must be at most {cap} (4 per CPU of this machine, which has "
                         f"{os.cpu_count()}; 0 = all cores), got {num_threads}")
    return int(num_threads)


# Squared distances must not overflow, and the float32 GEMM stage's products must not underflow
# (its error bound is relative): the largest |value| (over sqrt(D); the C++ constants, which
# the sampler loops use too), and the smallest spread about the training mean, the engines
# handle. (float64 sums of squares that underflow only matter at sigma^2 below their own size,
# where every weight is decided by the float64 refinement anyway.)
_MAX_ABS = {np.dtype(np.float32): _core.MAX_ABS_FLOAT32,
            np.dtype(np.float64): _core.MAX_ABS_FLOAT64}
_MIN_SPREAD = {np.dtype(np.float32): 1e-15, np.dtype(np.float64): 0.0}


def max_abs_value(dtype, dim: int) -> float:
    """The largest |value| of data in ``dtype`` at dimension ``dim`` whose squared distances
    stay finite (``max_abs_value`` of cpp/include/mixscore/sampler.hpp)."""
    return _MAX_ABS[np.dtype(dtype)] / np.sqrt(max(1, dim))


def check_image_shapes(shape_a, shape_b, name_a: str, name_b: str) -> None:
    """Refuse two image stacks whose images (shapes without the row axis, None for rows of
    points) differ: the same number of values per row in another layout (transposed,
    channel-first against channel-last, gray against RGB) would give wrong distances."""
    def image(shape):  # (a gray image with its channel axis of 1 is the same image)
        s = None if shape is None else tuple(shape)
        return s[:2] if s and len(s) == 3 and s[2] == 1 else s

    a, b = image(shape_a), image(shape_b)
    if a and b and len(a) > 1 and len(b) > 1 and a != b:
        raise ValueError(f"{name_a} are images of shape {a} but {name_b} images have shape "
                         f"{b}: give both in one layout (e.g. channel-last (H, W, C))")


def check_magnitudes(arr: np.ndarray, name: str, dtype, *, spread: bool = True,
                     top: float | None = None, dev: float | None = None) -> float:
    """Refuse data whose squared distances would overflow, or float32 data whose spread (largest
    column range) is below 1e-15, where the float32 products underflow, with the remedy;
    returns the largest |value| (``top``, ``dev``: already known, e.g. for a device array)."""
    dtype = np.dtype(dtype)
    if top is None and spread:
        top, dev = value_ranges(arr, name, _MIN_SPREAD[dtype])
    elif top is None:  # (one pass each for min and max: the per-call check of queries)
        top = float(max(-np.min(arr), np.max(arr))) if arr.size else 0.0
    limit = max_abs_value(dtype, arr.shape[-1])
    if top > limit:
        hint = " or use dtype=np.float64" if dtype == np.float32 else ""
        raise ValueError(
            f"{name} has values up to {top:.3g}: squared distances would overflow {dtype} "
            f"(limit |value| <= {limit:.3g} at D = {arr.shape[-1]}); rescale the data{hint}")
    if spread and _MIN_SPREAD[dtype] > 0 and arr.shape[0] > 1:
        if dev is None:
            dev = value_ranges(arr, name, _MIN_SPREAD[dtype])[1]
        # (a spread at the values' rounding, 1e-9 of them, is identical points: no products)
        if 1e-9 * top < dev < _MIN_SPREAD[dtype]:
            hint = " or use dtype=np.float64" if dtype == np.float32 else ""
            raise ValueError(f"{name} varies by at most {dev:.3g}: {dtype} products of values "
                             f"this small underflow (limit {_MIN_SPREAD[dtype]:g}); rescale "
                             f"the data (distances scale linearly){hint}")
    return top
