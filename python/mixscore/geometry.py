"""Distances from points to the known data manifolds of the toy experiments.

Closed forms (exact up to float64 rounding) for spheres and circles, affine subspaces and lines;
a numerical search for parametrized curves such as the spiral X = (U cos U, U sin U),
U ~ Unif[1, 13] of the bounded-target paper; and ``ms.nearest`` for finite point sets (the
empirical distribution's own support). All functions take points as an (M, D) array and return
(M,) float64 distances.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ._validation import as_float_matrix, describe
from .nearest import nearest

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _points(points, name="points"):
    return np.asarray(as_float_matrix(points, name), np.float64)


def _vector(v, d: int, name: str, default=0.0) -> np.ndarray:
    if v is None:
        return np.full(d, default)
    arr = np.asarray(v, np.float64)
    if arr.shape != (d,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a finite vector of shape ({d},) matching the points' "
                         f"dimension, got {describe(arr)}")
    return arr


def _basis(basis, d: int, rows: int | None, name: str = "basis") -> np.ndarray:
    """Orthonormal rows spanning the same subspace as ``basis`` (Gram-Schmidt via QR)."""
    B = np.asarray(basis, np.float64)
    if B.ndim == 1:
        B = B[None, :]
    if B.ndim != 2 or B.shape[1] != d or (rows is not None and B.shape[0] != rows):
        want = f"({rows}, {d})" if rows is not None else f"(r, {d})"
        raise ValueError(f"{name} must have shape {want}, got {describe(B)}")
    if not np.all(np.isfinite(B)):
        raise ValueError(f"{name} contains NaN or Inf")
    q, r = np.linalg.qr(B.T)
    diag = np.abs(np.diag(r))
    if diag.size == 0 or np.min(diag) <= 1e-12 * max(1.0, np.max(diag)):
        raise ValueError(f"{name} rows must be linearly independent (non-zero directions)")
    return q.T


def _split(p: np.ndarray, B: np.ndarray):
    """In-subspace coordinates and the norm of the orthogonal residual (computed directly)."""
    coords = p @ B.T
    resid = p - coords @ B
    return coords, np.sqrt(np.einsum("md,md->m", resid, resid))


def distance_to_sphere(points, radius: float = 1.0, center=None, basis=None) -> np.ndarray:
    """Distance to the sphere |y - center| = radius.

    Without ``basis`` it is the sphere S^{D-1} of R^D: | |x - c| - r |. With ``basis`` ((r, D)
    directions, orthonormalized here) it is the sphere of dimension r - 1 inside the affine
    subspace c + span(basis): sqrt((|P(x - c)| - radius)^2 + |x - c - P(x - c)|^2).
    """
    x = _points(points)
    d = x.shape[1]
    radius = float(radius)
    if not (math.isfinite(radius) and radius >= 0):
        raise ValueError(f"radius must be finite and >= 0, got {radius!r}")
    p = x - _vector(center, d, "center")
    if basis is None:
        return np.abs(np.sqrt(np.einsum("md,md->m", p, p)) - radius)
    coords, perp = _split(p, _basis(basis, d, None))
    inplane = np.sqrt(np.einsum("mr,mr->m", coords, coords))
    return np.hypot(inplane - radius, perp)


def distance_to_circle(points, radius: float = 1.0, center=None, plane=None) -> np.ndarray:
    """Distance to the circle of ``radius`` about ``center`` in a 2-plane.

    ``plane`` is a (2, D) pair of directions spanning the circle's plane (default the first two
    coordinate axes). For D = 2 this is | |x - c| - r |.
    """
    x = _points(points)
    d = x.shape[1]
    if d < 2:
        raise ValueError(f"a circle needs points with at least 2 columns, got {describe(x)}")
    if plane is None:
        plane = np.eye(2, d)
    return distance_to_sphere(x, radius, center, _basis(plane, d, 2, "plane"))


def distance_to_subspace(points, basis, origin=None) -> np.ndarray:
    """Distance to the affine subspace origin + span(basis) ((r, D) directions)."""
    x = _points(points)
    d = x.shape[1]
    p = x - _vector(origin, d, "origin")
    return _split(p, _basis(basis, d, None))[1]


def distance_to_line(points, point=None, direction=None) -> np.ndarray:
    """Distance to the line through ``point`` (default 0) along ``direction`` (default the
    first axis: the "line normal distribution" X = (X1, 0) of the bounded-target paper)."""
    x = _points(points)
    d = x.shape[1]
    if direction is None:
        direction = np.eye(1, d)[0]
    direction = _vector(direction, d, "direction")
    return distance_to_subspace(x, direction[None, :], point)


def spiral(u) -> np.ndarray:
    """The bounded-target paper's curve c(u) = (u cos u, u sin u)."""
    u = np.asarray(u, np.float64)
    return np.stack([u * np.cos(u), u * np.sin(u)], axis=-1)


def distance_to_curve(points, curve: Callable[[np.ndarray], np.ndarray], t_min: float,
                      t_max: float, n_grid: int = 4096, iterations: int = 60) -> np.ndarray:
    """Distance to a parametrized curve {curve(t): t in [t_min, t_max]} (numerical).

    ``curve`` maps a 1-d array of parameters to an (n, D) array of points. The curve is
    sampled at ``n_grid`` equally spaced parameters; for each point the nearest sample (exact,
    ``ms.nearest``) brackets the minimizer in [t_{j-1}, t_{j+1}], and ``iterations`` golden-
    section steps shrink the bracket by 0.618^iterations (60: ~3e-13 of the grid step).

    Accuracy: exact to float64 rounding whenever the squared distance is unimodal on the
    bracket and the global minimizer lies in it, i.e. whenever the grid step is small against
    the curve's local feature size (curvature radius, gap between neighbouring arms) at the
    points' distance. Otherwise the result is still an upper bound (a distance to a point of the
    curve) and at most the grid-sampled distance.
    """
    x = _points(points)
    t_min, t_max = float(t_min), float(t_max)
    if not (math.isfinite(t_min) and math.isfinite(t_max) and t_max > t_min):
        raise ValueError(f"need finite t_min < t_max, got [{t_min}, {t_max}]")
    if int(n_grid) < 2:
        raise ValueError(f"n_grid must be >= 2, got {n_grid}")
    t = np.linspace(t_min, t_max, int(n_grid))
    C = np.asarray(curve(t), np.float64)
    if C.shape != (t.size, x.shape[1]):
        raise ValueError(f"curve(t) must return shape ({t.size}, {x.shape[1]}) for the points' "
                         f"dimension, got {describe(C)}")
    res = nearest(x, C, 1, queries_name="points", train_name="curve samples")
    j = res.indices[:, 0]
    best_d = res.distances[:, 0]
    lo = t[np.maximum(j - 1, 0)]
    hi = t[np.minimum(j + 1, t.size - 1)]

    def dist(tt):
        diff = x - np.asarray(curve(tt), np.float64)
        return np.sqrt(np.einsum("md,md->m", diff, diff))

    a, b = lo.copy(), hi.copy()
    c = b - _GOLDEN * (b - a)
    d = a + _GOLDEN * (b - a)
    fc, fd = dist(c), dist(d)
    for _ in range(int(iterations)):
        left = fc < fd  # minimum in [a, d]
        b = np.where(left, d, b)
        a = np.where(left, a, c)
        new_c = b - _GOLDEN * (b - a)
        new_d = a + _GOLDEN * (b - a)
        c_next = np.where(left, new_c, d)
        d_next = np.where(left, c, new_d)
        f_eval = dist(np.where(left, new_c, new_d))
        fc, fd = np.where(left, f_eval, fd), np.where(left, fc, f_eval)
        c, d = c_next, d_next
    refined = np.minimum(fc, fd)
    ends = np.minimum(dist(lo), dist(hi))
    return np.minimum(np.minimum(refined, ends), best_d)


def distance_to_spiral(points, u_min: float = 1.0, u_max: float = 13.0, n_grid: int = 4096,
                       iterations: int = 60) -> np.ndarray:
    """Distance of 2-d points to the spiral (u cos u, u sin u), u in [u_min, u_max] (default
    the bounded-target paper's [1, 13]). Numerical; see :func:`distance_to_curve` (with the
    default grid the step is 3e-3 in u, far below the arms' spacing 2 pi)."""
    x = _points(points)
    if x.shape[1] != 2:
        raise ValueError(f"points must have shape (M, 2) for the planar spiral, got "
                         f"{describe(x)}")
    return distance_to_curve(x, spiral, u_min, u_max, n_grid, iterations)


def distance_to_points(points, support, *, backend: str = "auto") -> np.ndarray:
    """Exact distance to a finite point set (e.g. the training set), via ``ms.nearest``."""
    return nearest(points, support, 1, backend=backend, queries_name="points",
                   train_name="support").distances[:, 0]
