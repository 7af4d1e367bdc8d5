"""ms.geometry: distances to the toy manifolds against closed forms and dense brute force."""

import math

import mixscore as ms
import numpy as np
import pytest
from conftest import rng

geo = ms.geometry


def _brute(points, curve_points):
    return ms.nearest(points, curve_points, 1, backend="numpy").distances[:, 0]


def test_sphere_full_space():
    g = rng(0)
    x = g.standard_normal((50, 7)) * 3
    c = g.standard_normal(7)
    d = geo.distance_to_sphere(x, 2.0, c)
    np.testing.assert_allclose(d, np.abs(np.linalg.norm(x - c, axis=1) - 2.0), rtol=1e-14)
    assert geo.distance_to_sphere([c], 2.0, c)[0] == pytest.approx(2.0)
    on = c + 2.0 * (x - c) / np.linalg.norm(x - c, axis=1, keepdims=True)
    assert np.max(geo.distance_to_sphere(on, 2.0, c)) < 1e-14


def test_circle_in_a_plane_matches_dense_sampling():
    g = rng(1)
    D = 4
    plane = g.standard_normal((2, D))  # any two independent directions
    c = g.standard_normal(D)
    x = c + g.standard_normal((40, D))
    d = geo.distance_to_circle(x, 1.5, c, plane)
    q, _ = np.linalg.qr(plane.T)
    theta = np.linspace(0, 2 * np.pi, 200_001)
    ring = c + 1.5 * (np.cos(theta)[:, None] * q[:, 0] + np.sin(theta)[:, None] * q[:, 1])
    brute = _brute(x, ring)
    assert np.all(d <= brute + 1e-12)
    np.testing.assert_allclose(d, brute, atol=1e-9)
    # default: unit circle in the first two coordinates
    np.testing.assert_allclose(geo.distance_to_circle([[2, 0, 0], [0, 0, 1], [0, 0, 0]]),
                               [1.0, math.sqrt(2), 1.0], rtol=1e-15)


def test_line_and_subspace():
    g = rng(2)
    x = g.standard_normal((30, 3))
    # default line: the first axis (the bounded-target paper's X = (X1, 0))
    np.testing.assert_allclose(geo.distance_to_line(x), np.hypot(x[:, 1], x[:, 2]), rtol=1e-14)
    p, u = np.array([1.0, 2.0, 3.0]), np.array([0.0, 3.0, 4.0])
    r = x - p
    want = np.linalg.norm(r - np.outer(r @ u / 25.0, u), axis=1)
    np.testing.assert_allclose(geo.distance_to_line(x, p, u), want, rtol=1e-12)
    plane = geo.distance_to_subspace(x, [[1.0, 1.0, 0.0], [1.0, -1.0, 0.0]], origin=[0, 0, 2])
    np.testing.assert_allclose(plane, np.abs(x[:, 2] - 2), rtol=1e-12, atol=1e-15)


def test_spiral_normal_offsets_and_brute_force():
    g = rng(3)
    u = g.uniform(1.5, 12.5, 300)
    tangent = np.stack([np.cos(u) - u * np.sin(u), np.sin(u) + u * np.cos(u)], 1)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)
    h = g.uniform(-0.5, 0.5, 300)
    y = geo.spiral(u) + h[:, None] * normal
    np.testing.assert_allclose(geo.distance_to_spiral(y), np.abs(h), atol=1e-10)
    # arbitrary points of the plane against dense sampling
    x = g.uniform(-14, 14, (60, 2))
    d = geo.distance_to_spiral(x)
    brute = _brute(x, geo.spiral(np.linspace(1, 13, 400_001)))
    assert np.all(d <= brute + 1e-12)
    np.testing.assert_allclose(d, brute, atol=1e-6)  # brute force: grid error ~ step^2 / 8 d


def test_generic_curve_and_point_sets():
    x = np.array([[0.0, 2.0], [3.0, 0.5], [-1.0, -1.0]])
    seg = geo.distance_to_curve(x, lambda t: np.stack([t, 0 * t], 1), 0.0, 1.0, n_grid=7)
    np.testing.assert_allclose(seg, [2.0, math.hypot(2.0, 0.5), math.sqrt(2)], rtol=1e-12)
    g = rng(4)
    P = g.standard_normal((100, 5))
    q = g.standard_normal((20, 5))
    np.testing.assert_array_equal(geo.distance_to_points(q, P),
                                  ms.nearest(q, P, 1).distances[:, 0])
    assert np.all(geo.distance_to_points(P[:5], P) == 0.0)


def test_errors():
    with pytest.raises(ValueError, match="at least 2 columns"):
        geo.distance_to_circle(np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"plane must have shape \(2, 3\)"):
        geo.distance_to_circle(np.zeros((3, 3)), plane=np.eye(3))
    with pytest.raises(ValueError, match="linearly independent"):
        geo.distance_to_circle(np.zeros((3, 3)), plane=[[1, 0, 0], [2, 0, 0]])
    with pytest.raises(ValueError, match="radius must be finite and >= 0"):
        geo.distance_to_sphere(np.zeros((3, 3)), -1.0)
    with pytest.raises(ValueError, match=r"center must be a finite vector of shape \(3,\)"):
        geo.distance_to_sphere(np.zeros((3, 3)), 1.0, center=[0, 0])
    with pytest.raises(ValueError, match=r"points must have shape \(M, 2\)"):
        geo.distance_to_spiral(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="points contains NaN"):
        geo.distance_to_line(np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match=r"curve\(t\) must return shape"):
        geo.distance_to_curve(np.zeros((2, 2)), lambda t: t, 0.0, 1.0)
    with pytest.raises(ValueError, match="t_min < t_max"):
        geo.distance_to_curve(np.zeros((2, 2)), geo.spiral, 2.0, 1.0)
