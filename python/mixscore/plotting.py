"""Plots of memorization results (matplotlib is an optional extra: ``pip install mixscore[plot]``).

``plot_ratio_histogram``  histogram of d1/d2 with the ratio threshold;
``plot_nearest_grid``     generated samples next to their nearest training images;
``memorization_figure``   both in one figure (what ``mixscore memorization --plot`` writes).
"""

from __future__ import annotations

import math

import numpy as np


def _plt():
    try:
        import matplotlib.pyplot as plt  # falls back to Agg by itself when headless
    except ImportError:
        raise ImportError("mixscore plotting needs matplotlib: pip install 'mixscore[plot]' "
                          "(or pip install matplotlib)") from None
    return plt


def require_matplotlib() -> None:
    """Raise a clear ImportError now if matplotlib is missing (before any work is done)."""
    _plt()


def plot_ratio_histogram(report, ax=None, bins: int = 50):
    """Histogram of d1/d2 per sample with the ratio-rule threshold marked."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    r = np.asarray(report.ratio)
    ax.hist(r, bins=np.linspace(0, 1, bins + 1), color="#4878a8", edgecolor="white")
    thr = report.ratio_threshold
    ax.axvline(thr, color="#c03030", lw=2,
               label=f"d1/d2 < {thr:.3g}: {100 * report.fraction_ratio:.1f}% memorized")
    ax.set_xlabel("d1 / d2 (nearest / second-nearest training distance)")
    ax.set_ylabel("samples")
    ax.set_xlim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    return ax


def infer_image_shape(dim: int, image_shape=None):
    """(H, W) or (H, W, C) for flattened images of ``dim`` values, or None if not image-like.
    Channel-last; square images with 1 or 3 channels are recognised when no shape is given."""
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        if math.prod(shape) != dim:
            raise ValueError(f"image_shape {shape} has {math.prod(shape)} values, the data has "
                             f"{dim} per row")
        return shape
    for c in (1, 3):
        side = math.isqrt(dim // c)
        if side * side * c == dim and side >= 4:
            return (side, side) if c == 1 else (side, side, 3)
    return None


def _as_image(row: np.ndarray, shape, lo: float, hi: float):
    img = row.reshape(shape).astype(np.float64)
    img = (img - lo) / (hi - lo) if hi > lo else img * 0
    return np.clip(img, 0, 1)


def plot_nearest_grid(samples, train, indices, image_shape=None, n: int = 8, order=None,
                      fig=None, value_range=None, labels: bool = True, below=None):
    """Grid of ``n`` generated samples (top row) above their nearest training images (bottom
    row). ``indices`` are nearest-training indices (e.g. ``report.nn_index``); ``order``
    chooses which samples are shown (default: the n with the smallest d1/d2 if given as a
    report's ratio, else the first n). ``labels`` puts "sample i" / "train j" above each
    image; ``below`` is one caption per shown pair, written under it (e.g. its distance)."""
    plt = _plt()
    samples = np.asarray(samples)
    train = np.asarray(train)
    dim = samples.reshape(samples.shape[0], -1).shape[1]
    shape = infer_image_shape(dim, image_shape)
    if shape is None:
        raise ValueError(f"cannot show rows of {dim} values as images; pass image_shape")
    S = samples.reshape(samples.shape[0], -1)
    X = train.reshape(train.shape[0], -1)
    idx = np.asarray(indices).reshape(-1)
    sel = np.arange(min(n, S.shape[0])) if order is None else np.asarray(order)[:n]
    if value_range is None:
        both = np.concatenate([S[sel].ravel(), X[idx[sel]].ravel()])
        value_range = (float(both.min()), float(both.max()))
    lo, hi = value_range
    cols = max(1, len(sel))
    if fig is None:
        fig = plt.figure(figsize=(1.3 * cols, 2.9))
    axes = fig.subplots(2, cols, squeeze=False)
    gray = len(shape) == 2
    for c, i in enumerate(sel):
        for r, row in enumerate((S[i], X[idx[i]])):
            ax = axes[r][c]
            ax.imshow(_as_image(row, shape, lo, hi), cmap="gray" if gray else None,
                      vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        if labels:
            axes[0][c].set_title(f"sample {int(i)}", fontsize=7)
            axes[1][c].set_title(f"train {int(idx[i])}", fontsize=7)
        if below is not None:
            axes[1][c].set_xlabel(below[c], fontsize=7)
    axes[0][0].set_ylabel("generated", fontsize=8)
    axes[1][0].set_ylabel("nearest train", fontsize=8)
    return fig


def memorization_figure(report, samples=None, train=None, image_shape=None, n: int = 8):
    """The ratio histogram, plus the nearest-image grid when the data look like images."""
    plt = _plt()
    shape = None
    if samples is not None and train is not None:
        shape = infer_image_shape(report.dim, image_shape)
    if shape is None:
        fig, ax = plt.subplots(figsize=(6, 4))
        plot_ratio_histogram(report, ax)
        fig.tight_layout()
        return fig
    fig = plt.figure(figsize=(max(6.0, 1.3 * n), 7))
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.1, 1])
    plot_ratio_histogram(report, top.subplots())
    order = np.argsort(report.ratio, kind="stable")
    plot_nearest_grid(samples, train, report.nn_index, shape, n=n, order=order, fig=bottom)
    bottom.suptitle("most memorized samples (smallest d1/d2) and their nearest training images",
                    fontsize=9)
    return fig
