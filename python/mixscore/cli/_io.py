"""Reading the CLI's data files: .npy, .npz (``file.npz:key``) and folders of PNG images."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from . import CliError

IMAGE_SUFFIXES = (".png",)


def _split_key(spec: str):
    head, sep, key = spec.rpartition(":")
    if sep and head.lower().endswith(".npz") and key:
        return head, key
    return spec, None


def _load_folder(path: str, option: str):
    files = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise CliError(f"cannot read {option} {path!r}: the folder holds no .png images")
    try:
        from PIL import Image
    except ImportError:
        raise CliError(f"reading the image folder {option} {path!r} needs Pillow: "
                       f"pip install pillow") from None
    images = []
    for f in files:
        try:
            with Image.open(os.path.join(path, f)) as im:
                im = im.convert("L" if im.mode in ("1", "L", "I", "I;16", "F") else "RGB")
                images.append(np.asarray(im, dtype=np.float32))
        except OSError as e:
            raise CliError(f"cannot read {option} image {f!r} in {path!r}: {e}") from None
    shapes = {a.shape for a in images}
    if len(shapes) != 1:
        raise CliError(f"{option} {path!r}: images have different shapes {sorted(shapes)}")
    return np.stack(images)


def load_array(spec: str, option: str) -> np.ndarray:
    """The numeric array in a .npy / .npz[:key] file or a folder of PNG images."""
    path, key = _split_key(spec)
    if not os.path.exists(path):
        raise CliError(f"cannot read {option} {path!r}: no such file or folder")
    try:
        if os.path.isdir(path):
            arr = _load_folder(path, option)
        elif path.lower().endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                if key is None:
                    if len(keys) != 1:
                        raise CliError(f"{option} {path!r} holds the arrays {keys}; choose one "
                                       f"as {path}:KEY")
                    key = keys[0]
                if key not in keys:
                    raise CliError(f"{option} {path!r} has no array {key!r} (it holds {keys})")
                arr = z[key]
        else:
            arr = np.load(path, allow_pickle=False)
    except CliError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CliError(f"cannot read {option} {path!r}: {e}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiub":
        raise CliError(f"{option} {spec!r} is not a numeric array")
    return arr


def load_points(spec: str, option: str):
    """(rows (M, D) array, image shape channel-last or None) from a .npy / .npz / PNG folder.

    Arrays with more than 2 dimensions are rows of images: (M, H, W), (M, H, W, C) or
    channel-first (M, C, H, W) with C in {1, 3, 4}, flattened channel-last."""
    arr = load_array(spec, option)
    if arr.ndim < 2:
        raise CliError(f"{option} {spec!r} must hold rows of points (2-d or image stack), got "
                       f"shape {arr.shape}")
    image_shape = None
    if arr.ndim == 4 and arr.shape[1] in (1, 3, 4) and arr.shape[3] not in (1, 3, 4):
        arr = np.moveaxis(arr, 1, -1)  # channel-first to channel-last
    if arr.ndim > 2:
        image_shape = arr.shape[1:]
        if len(image_shape) == 3 and image_shape[2] == 1:
            image_shape = image_shape[:2]
        arr = arr.reshape(arr.shape[0], -1)
    return arr, image_shape
