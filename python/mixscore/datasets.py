"""Data sets: the 8x8 handwritten digits (bundled, offline), the toy sets of the papers, and
loading of a user's .npy / .npz files.

Digits: the 1797 images of the UCI "Optical Recognition of Handwritten Digits" test set (the
copy scikit-learn ships as ``load_digits``): 8x8 images, integer pixels 0..16, ten classes.
Creators E. Alpaydin and C. Kaynak (1998); licence CC BY 4.0. Cite: E. Alpaydin, C. Kaynak,
"Optical Recognition of Handwritten Digits", UCI Machine Learning Repository (1998),
https://doi.org/10.24432/C50P49.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from ._validation import as_float_matrix

__all__ = ["digits", "two_points", "five_points", "gaussian_points", "circle", "hexagon",
           "line", "spiral", "load", "get", "NAMES"]

DIGITS_PIXEL_MAX = 16


def digits(value_range: tuple[float, float] | None = (-1.0, 1.0), *, labels: bool = False,
           dtype=np.float64):
    """The 1797 8x8 digits as a (1797, 64) array, row-major 8x8 images.

    Pixels 0..16 are mapped linearly onto ``value_range`` (default [-1, 1], the usual range for
    diffusion models: x = p / 8 - 1); ``value_range=None`` returns the raw 0..16 integers as
    ``dtype``. With ``labels=True`` returns ``(images, labels)``.
    """
    with resources.files("mixscore").joinpath("data/digits.npz").open("rb") as fh:
        data = np.load(fh)
        images, y = data["images"], data["labels"]
    x = images.astype(dtype)
    if value_range is not None:
        lo, hi = (float(v) for v in value_range)
        if not hi > lo:
            raise ValueError(f"value_range must be (low, high) with high > low, got "
                             f"{value_range!r}")
        x = (lo + (hi - lo) * x / DIGITS_PIXEL_MAX).astype(dtype)
    return (x, y.astype(np.int64)) if labels else x


def two_points() -> np.ndarray:
    """Two points -1 and +1 on the line: denoiser tanh(alpha x / sigma^2)."""
    return np.array([[-1.0], [1.0]])


def five_points(seed: int = 0) -> np.ndarray:
    """Five standard-normal points in the plane (the bounded-target paper draws "5 points
    randomly" without giving them; this is a fixed stand-in, NumPy RandomState(seed))."""
    return np.random.RandomState(seed).randn(5, 2)


def gaussian_points(n: int = 20, dim: int = 2, seed: int = 1) -> np.ndarray:
    """n standard-normal points; the defaults are the memorization paper's 20 points in the
    plane drawn with NumPy seed 1 (``np.random.seed(1); np.random.randn(20, 2)``)."""
    return np.random.RandomState(seed).randn(n, dim)


def circle(n: int = 9, radius: float = 1.0) -> np.ndarray:
    """n evenly spaced points on a circle (Pidstrigach: 9 points on S^1), the first at angle 0."""
    a = 2 * np.pi * np.arange(n) / n
    return radius * np.column_stack([np.cos(a), np.sin(a)])


def hexagon(radius: float = 1.0) -> np.ndarray:
    """The six vertices of a regular hexagon."""
    return circle(6, radius)


def line(n: int = 1000, seed: int = 0) -> np.ndarray:
    """The bounded-target paper's line data: X = (X1, 0) with X1 ~ N(0, 1) (its section 4.1)."""
    return np.column_stack([np.random.RandomState(seed).randn(n), np.zeros(n)])


def spiral(n: int = 200, turns: float = 2.0, radius: float = 1.0) -> np.ndarray:
    """n points on the Archimedean spiral r = radius * s, angle 2 pi turns s, s evenly spaced in
    (0, 1] (a one-dimensional manifold in the plane)."""
    s = np.arange(1, n + 1) / n
    a = 2 * np.pi * turns * s
    return radius * s[:, None] * np.column_stack([np.cos(a), np.sin(a)])


NAMES = {
    "digits": digits, "two_points": two_points, "five_points": five_points,
    "gaussian_points": gaussian_points, "circle": circle, "hexagon": hexagon, "line": line,
    "spiral": spiral,
}


def get(name: str) -> np.ndarray:
    """A built-in data set by name (default parameters), or a path to a .npy / .npz file
    (``PATH.npz:KEY`` names one array of an archive)."""
    if name in NAMES:
        return NAMES[name]()
    path, sep, key = name.rpartition(":")
    if sep and path.endswith(".npz") and key:
        return load(path, key)
    if name.endswith((".npy", ".npz")):
        return load(name)
    raise ValueError(f"unknown data set {name!r}; expected one of {sorted(NAMES)} or a path "
                     "to a .npy/.npz file")


def load(path, key: str | None = None) -> np.ndarray:
    """A (N, D) float array from a .npy file or a .npz archive (``key``, or its only array, or
    one named 'train', 'x' or 'data'). Images (N, H, W[, C]) are flattened to rows."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {str(p)!r}")
    try:
        obj = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {str(p)!r} as .npy/.npz: {e}") from None
    if isinstance(obj, np.lib.npyio.NpzFile):
        with obj:
            names = list(obj.files)
            if key is None:
                for cand in ("train", "x", "data", "samples"):
                    if cand in names:
                        key = cand
                        break
                else:
                    if len(names) != 1:
                        raise ValueError(f"{str(p)!r} holds arrays {names}; say which with key= "
                                         f"(or as {str(p)}:KEY)")
                    key = names[0]
            if key not in names:
                raise ValueError(f"{str(p)!r} has no array {key!r}; it holds {names}")
            arr = obj[key]
    else:
        arr = obj
    if arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)
    elif arr.ndim == 1:
        arr = arr[:, None]
    return as_float_matrix(arr, str(p))
