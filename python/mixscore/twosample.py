"""Two-sample distances between generated samples and a reference set (SCIENCE.md section 5):
the training set itself, or a baseline such as KDE draws (``ms.sample(model, sampler="kde")``).

``energy_distance``  Szekely and Rizzo's energy distance (J. Stat. Plann. Inference 143, 2013,
                     Eq. 1), 2 E|X - Y| - E|X - X'| - E|Y - Y'|, the V-statistic (every pair,
                     the zero self-distances included; ``dcor.energy_distance``'s convention).
                     It is 0 exactly when the two distributions are equal (SciPy's 1-d
                     ``scipy.stats.energy_distance`` is its square root).
``mmd``              the maximum mean discrepancy with the Gaussian kernel
                     k(x, y) = exp(-|x - y|^2 / (2 h^2)), squared, unbiased (Gretton et al.,
                     JMLR 13, 2012, Eq. 3: the U-statistic, no self-pairs); h defaults to the
                     median pairwise distance of the pooled sets (the median heuristic).

Pairwise distances are formed block by block in float64 (memory O(block x N), never M x N)
from the norm expansion about the pooled mean: a distance carries an error of about 1e-8 of
the data's scale (the square root of float64 rounding), so a statistic is accurate to that.
"""

from __future__ import annotations

import numpy as np

from ._validation import as_float_matrix, as_points

__all__ = ["energy_distance", "mmd"]

_BLOCK_ELEMENTS = 1 << 22  # entries of one block of pairwise distances


def _sets(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = as_float_matrix(as_points(x, "x")[0], "x", dtype=np.float64)
    y = as_float_matrix(as_points(y, "y", x.shape[1], f"x (D = {x.shape[1]})")[0], "y",
                        dtype=np.float64)
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"x and y need at least 2 points each, got {x.shape[0]} and "
                         f"{y.shape[0]}")
    return x, y


def _pair_sums(a: np.ndarray, b: np.ndarray, fn) -> float:
    """sum over all pairs (i, j) of fn(|a_i - b_j|^2), in row blocks of a (float64). The
    squared distances come from |a|^2 + |b|^2 - 2 a.b about the pooled mean (centring removes
    the offset the expansion would cancel), clamped at 0."""
    na, nb = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
    rows = max(1, _BLOCK_ELEMENTS // max(1, b.shape[0]))
    total = 0.0
    for i in range(0, a.shape[0], rows):
        sq = na[i : i + rows, None] + nb[None, :] - 2.0 * (a[i : i + rows] @ b.T)
        total += float(np.sum(fn(np.maximum(sq, 0.0))))
    return total


def _centred(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = np.concatenate([x, y]).mean(axis=0)
    return x - mu, y - mu


def energy_distance(x, y) -> float:
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| over the empirical distributions of ``x`` (M, D) and
    ``y`` (N, D) (Szekely and Rizzo 2013, Eq. 1; >= 0, 0 when the sets coincide as
    distributions). Units: those of the data (a distance, not squared)."""
    x, y = _centred(*_sets(x, y))
    m, n = x.shape[0], y.shape[0]
    xy = _pair_sums(x, y, np.sqrt) / (m * n)
    xx = _pair_sums(x, x, np.sqrt) / (m * m)
    yy = _pair_sums(y, y, np.sqrt) / (n * n)
    return max(0.0, 2.0 * xy - xx - yy)


def median_distance(x, y, max_points: int = 2000) -> float:
    """The median pairwise distance of the pooled points (the first ``max_points`` of each
    set): the Gaussian kernel's default bandwidth."""
    x, y = _sets(x, y)
    z = np.concatenate([x[:max_points], y[:max_points]])
    z = z - z.mean(axis=0)
    nz = np.einsum("ij,ij->i", z, z)
    sq = np.maximum(nz[:, None] + nz[None, :] - 2.0 * (z @ z.T), 0.0)
    d = np.sqrt(sq[np.triu_indices(z.shape[0], k=1)])
    return float(np.median(d))


def mmd(x, y, bandwidth: float | None = None) -> float:
    """The unbiased squared maximum mean discrepancy between ``x`` (M, D) and ``y`` (N, D) with
    the Gaussian kernel of ``bandwidth`` h (Gretton et al. 2012, Eq. 3; default: the median
    pairwise distance of the pooled sets). An unbiased estimate: it may be slightly
    negative when the distributions are equal."""
    x, y = _sets(x, y)
    h = median_distance(x, y) if bandwidth is None else float(bandwidth)
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"bandwidth must be a finite number > 0, got {h!r}"
                         + (" (the median pairwise distance: identical points)"
                            if bandwidth is None else ""))
    x, y = _centred(x, y)
    m, n = x.shape[0], y.shape[0]

    def kernel(sq):
        return np.exp(-sq / (2.0 * h * h))

    kxx = (_pair_sums(x, x, kernel) - m) / (m * (m - 1))  # (the diagonal: k = 1 each)
    kyy = (_pair_sums(y, y, kernel) - n) / (n * (n - 1))
    kxy = _pair_sums(x, y, kernel) / (m * n)
    return kxx + kyy - 2.0 * kxy
