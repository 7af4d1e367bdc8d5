"""Reading the CLI's data files: .npy, .npz (``file.npz:key``) and folders of PNG images.

Declared sizes are checked against the input limit (``_limits``) before any data are loaded,
and every loading failure becomes a ``CliError`` naming the file (exit code 2)."""

from __future__ import annotations

import math
import os
import zipfile

import numpy as np

from . import CliError
from ._limits import DEFAULT_MAX_INPUT_GB, check_values
from ._npy import read_header
from ._png import load_folder

DEFAULT_LIMIT = int(DEFAULT_MAX_INPUT_GB * 1e9)


def _split_key(spec: str):
    head, sep, key = spec.rpartition(":")
    if sep and head.lower().endswith(".npz") and key:
        return head, key
    return spec, None


def input_path(spec: str) -> str:
    """The file or folder an input ``spec`` names (without an ``.npz`` ``:key``)."""
    return _split_key(spec)[0]


def _checked(fp, where: str, limit: int) -> None:
    shape, dtype = read_header(fp, where)
    check_values(f"{where} (shape {shape}, {dtype})", math.prod(shape), limit)


def _load_npz(path: str, key: str | None, option: str, limit: int) -> np.ndarray:
    with zipfile.ZipFile(path) as zf:
        members = {n[:-4] if n.endswith(".npy") else n: n for n in zf.namelist()}
        keys = list(members)
        if key is None:
            if len(keys) != 1:
                raise CliError(
                    f"{option} {path!r} holds the arrays {keys}; choose one as {path}:KEY"
                )
            key = keys[0]
        if key not in members:
            raise CliError(f"{option} {path!r} has no array {key!r} (it holds {keys})")
        with zf.open(members[key]) as fp:
            _checked(fp, f"{option} {path}:{key}", limit)
    with np.load(path, allow_pickle=False) as z:
        return z[key]


def _load_npy(path: str, option: str, limit: int) -> np.ndarray:
    with open(path, "rb") as fp:
        _checked(fp, f"{option} {path!r}", limit)
    return np.load(path, allow_pickle=False)


def load_array_with_note(
    spec: str, option: str, limit: int = DEFAULT_LIMIT
) -> tuple[np.ndarray, str | None]:
    """(the numeric array in a .npy / .npz[:key] file or a folder of PNG images, a sentence
    saying how images were read or None). Refuses inputs declaring more than ``limit`` bytes
    as float64 before loading them."""
    path, key = _split_key(spec)
    if not os.path.exists(path):
        raise CliError(f"cannot read {option} {path!r}: no such file or folder")
    note = None
    try:
        if os.path.isdir(path):
            arr, note = load_folder(path, f"{option} {path!r}", limit)
        elif path.lower().endswith(".npz"):
            arr = _load_npz(path, key, option, limit)
        else:
            arr = _load_npy(path, option, limit)
    except CliError:
        raise
    except Exception as e:  # every loading failure is reported as the file's
        raise CliError(f"cannot read {option} {path!r}: {type(e).__name__}: {e}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiub":
        raise CliError(f"{option} {spec!r} is not a numeric array")
    return arr, note


def load_array(spec: str, option: str, limit: int = DEFAULT_LIMIT) -> np.ndarray:
    """The numeric array in a .npy / .npz[:key] file or a folder of PNG images."""
    return load_array_with_note(spec, option, limit)[0]


def load_points(spec: str, option: str, limit: int = DEFAULT_LIMIT):
    """(rows (M, D) array, image shape channel-last or None, note) from a .npy / .npz / PNG
    folder; the note says how images were read (None for arrays).

    Arrays with more than 2 dimensions are rows of images: (M, H, W), (M, H, W, C) or
    channel-first (M, C, H, W) with C in {1, 3, 4}, flattened channel-last."""
    arr, note = load_array_with_note(spec, option, limit)
    if arr.ndim < 2:
        raise CliError(
            f"{option} {spec!r} must hold rows of points (2-d or image stack), got "
            f"shape {arr.shape}"
        )
    image_shape = None
    if arr.ndim == 4 and arr.shape[1] in (1, 3, 4) and arr.shape[3] not in (1, 3, 4):
        arr = np.moveaxis(arr, 1, -1)  # channel-first to channel-last
    if arr.ndim > 2:
        image_shape = arr.shape[1:]
        if len(image_shape) == 3 and image_shape[2] == 1:
            image_shape = image_shape[:2]
        arr = arr.reshape(arr.shape[0], -1)
    return arr, image_shape, note
