"""ms.nearest: exact distances, index tie-breaking, bit-identity with the float64 reference and
across threads / batch splits / query order / instruction sets, and clear errors."""

import mixscore as ms
import numpy as np
import pytest
from conftest import rng
from mixscore.backends.numpy_ref import exact_sq_distances, nearest_reference

BACKENDS = ms.available_backends()
DIMS = [2, 64, 784, 3072]


def _data(D, n, m, dtype, seed=0, scale="normal"):
    g = rng(seed + D)
    if scale == "pixels":  # 0..255 data, integers and halves, far from the origin
        X = np.round(g.uniform(0, 255, (n, D)) * 2) / 2
        Q = np.round(g.uniform(0, 255, (m, D)) * 2) / 2
    else:
        X = g.standard_normal((n, D))
        Q = g.standard_normal((m, D))
    return X.astype(dtype), Q.astype(dtype)


def _check_sorted(res):
    d, i = res
    assert np.all(np.diff(d, axis=1) >= 0)
    same = np.diff(d, axis=1) == 0
    assert np.all(np.diff(i, axis=1)[same] > 0)  # lower index first among equal distances


@pytest.mark.parametrize("D", DIMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copies_give_exact_zero(D, dtype, backend):
    X, Q = _data(D, 300, 12, dtype, scale="pixels")
    picks = [0, 7, 299, 150, 64, 65]
    Q[: len(picks)] = X[picks]
    d, i = ms.nearest(Q, X, k=2, backend=backend)
    assert np.all(d[: len(picks), 0] == 0.0)
    assert list(i[: len(picks), 0]) == picks
    assert np.all(d[: len(picks), 1] > 0.0)
    _check_sorted((d, i))


@pytest.mark.parametrize("D", DIMS)
@pytest.mark.parametrize("scale", ["normal", "pixels"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_reference_bitwise(D, scale, dtype):
    n, m = (700, 40) if D >= 784 else (1500, 150)
    X, Q = _data(D, n, m, dtype, seed=1, scale=scale)
    Q[-3:] = X[[5, 6, 5]]
    d_ref, i_ref = nearest_reference(Q, X, 5)
    for k in (1, 2, 5):
        res = ms.nearest(Q, X, k=k)
        assert res.distances.dtype == np.float64 and res.indices.dtype == np.int64
        np.testing.assert_array_equal(res.indices, i_ref[:, :k])
        np.testing.assert_array_equal(res.distances, d_ref[:, :k])  # bit-identical


def test_reference_is_a_float64_direct_difference():
    """The fixed-order reference agrees with a plain float64 computation to rounding."""
    X, Q = _data(64, 200, 30, np.float64, scale="pixels")
    d2 = exact_sq_distances(Q, X)
    plain = ((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(d2, plain, rtol=1e-14)


def _naive_f32(Q, X, k):
    """What torch.cdist / FAISS do: the float32 norm expansion."""
    Q32, X32 = Q.astype(np.float32), X.astype(np.float32)
    d2 = (Q32 * Q32).sum(1)[:, None] + (X32 * X32).sum(1)[None, :] - 2 * Q32 @ X32.T
    order = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return np.sqrt(np.maximum(np.take_along_axis(d2, order, 1), 0)), order


def test_near_ties_on_pixel_scale(backend):
    """Two training points at squared distances 10 and 11 (pixel units) from a query near 200
    in D = 3072: the float32 expansion's error (~eps |x|^2 ~ 7) misorders them; we must not."""
    g = rng(3)
    D, trials = 3072, 24
    Q = np.round(g.uniform(190, 210, (trials, D))).astype(np.float32)
    X = []
    for t in range(trials):
        far, near = Q[t].copy(), Q[t].copy()
        far[g.choice(D, 11, replace=False)] += 1  # d^2 = 11, lower index
        near[g.choice(D, 10, replace=False)] -= 1  # d^2 = 10
        X += [far, near]
    X = np.array(X, np.float32)
    d, i = ms.nearest(Q, X, k=2, backend=backend)
    want = np.arange(trials) * 2 + 1
    # every query's own pair comes first, nearer one first, with the exact distances
    np.testing.assert_array_equal(i[:, 0], want)
    np.testing.assert_array_equal(i[:, 1], want - 1)
    np.testing.assert_array_equal(d[:, 0], np.sqrt(10.0))
    np.testing.assert_array_equal(d[:, 1], np.sqrt(11.0))
    # the construction is adversarial: the float32 expansion gets some of these wrong
    d_naive, i_naive = _naive_f32(Q, X, 2)
    assert np.any(i_naive[:, 0] != want)
    # and puts copies several squared units away from 0 (clamped at 0 when negative)
    C = X[:24]
    naive_self = (C * C).sum(1) + (C * C).sum(1) - 2 * np.einsum("nd,nd->n", C, C)
    assert np.max(np.abs(naive_self)) >= 4.0
    assert np.all(ms.nearest(C, X, k=1, backend=backend).distances == 0.0)


def test_exact_ties_lower_index_first(backend):
    g = rng(4)
    X = g.standard_normal((50, 16))
    q = g.standard_normal(16)
    e = np.zeros(16)
    e[3] = 0.25
    X[30], X[12] = q + e, q - e  # the same distance
    X[40] = X[7]  # duplicate rows
    d, i = ms.nearest(np.stack([q, X[7]]), X, k=2, backend=backend)
    assert list(i[0]) == [12, 30] and d[0, 0] == d[0, 1] == 0.25
    assert list(i[1]) == [7, 40] and d[1, 0] == d[1, 1] == 0.0


@pytest.mark.parametrize("D", [3, 100])
def test_deterministic_threads_split_order_isa(D):
    """Bit-identical for any thread count, batch split, query order and instruction set."""
    from mixscore import _core

    X, Q = _data(D, 5000, 300, np.float32, seed=5)
    Q[::7] += 1e-3 * X[: len(Q[::7])]  # queries near training points too
    base = ms.nearest(Q, X, k=4, num_threads=1)
    for th in (2, 3, 0):
        r = ms.nearest(Q, X, k=4, num_threads=th)
        np.testing.assert_array_equal(r.distances, base.distances)
        np.testing.assert_array_equal(r.indices, base.indices)
    index = ms.NearestIndex(X, num_threads=2)
    parts = [index.search(Q[a:b], 4) for a, b in [(0, 1), (1, 130), (130, 131), (131, 300)]]
    np.testing.assert_array_equal(np.concatenate([p.distances for p in parts]), base.distances)
    np.testing.assert_array_equal(np.concatenate([p.indices for p in parts]), base.indices)
    perm = rng(6).permutation(len(Q))
    r = index.search(Q[perm], 4)
    np.testing.assert_array_equal(r.distances, base.distances[perm])
    np.testing.assert_array_equal(r.indices, base.indices[perm])
    current = _core.isa()
    try:
        for isa in ("generic", "avx2", "avx512"):
            if _core.set_isa(isa):
                r = ms.nearest(Q, X, k=4)
                np.testing.assert_array_equal(r.distances, base.distances)
                np.testing.assert_array_equal(r.indices, base.indices)
    finally:
        _core.set_isa(current)


def test_k_equals_n_and_k_one(backend):
    X, Q = _data(5, 37, 9, np.float64)
    d, i = ms.nearest(Q, X, k=37, backend=backend)
    assert all(sorted(row) == list(range(37)) for row in i)
    _check_sorted((d, i))
    d_ref, i_ref = nearest_reference(Q, X, 37)
    np.testing.assert_array_equal(i, i_ref)
    d1, i1 = ms.nearest(Q, X, k=1, backend=backend)
    assert d1.shape == (9, 1)
    np.testing.assert_array_equal(i1[:, 0], i_ref[:, 0])


def test_candidate_filter_is_selective():
    X, Q = _data(64, 20000, 256, np.float32, seed=7)
    index = ms.NearestIndex(X)
    index.search(Q, 2)
    assert 0 < index.n_refined < 0.02 * X.shape[0] * Q.shape[0]


def test_crowded_data_all_candidates():
    """All training points nearly equidistant (bound larger than the gaps): still exact."""
    g = rng(8)
    base = np.full(256, 200.0)
    X = (base + g.integers(0, 2, (3000, 256)) * 1e-3).astype(np.float32)
    Q = (base + g.integers(0, 2, (20, 256)) * 1e-3).astype(np.float32)
    d, i = ms.nearest(Q, X, k=3)
    d_ref, i_ref = nearest_reference(Q, X, 3)
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_array_equal(d, d_ref)


def test_dtypes_and_large_values():
    g = rng(9)
    X = g.standard_normal((300, 8)).astype(np.float32)
    Q64 = g.standard_normal((5, 8))
    # mixed dtypes promote to float64: the float64 queries are used unrounded
    r = ms.nearest(Q64, X, k=2)
    d_ref, i_ref = nearest_reference(Q64, X.astype(np.float64), 2)
    np.testing.assert_array_equal(r.indices, i_ref)
    np.testing.assert_array_equal(r.distances, d_ref)
    index = ms.NearestIndex(X)
    assert index.dtype == np.float32
    r1 = index.search(Q64, 2)  # not float32 numbers: searched with a float64-prepared copy
    np.testing.assert_array_equal(r1.distances, d_ref)
    # float64 arrays holding float32 numbers use the float32 GEMM stage, same exact results
    X64 = X.astype(np.float64)
    index64 = ms.NearestIndex(X64)
    assert index64.dtype == np.float32
    Q32 = Q64.astype(np.float32)
    r2 = index64.search(Q32.astype(np.float64), 2)
    r3 = ms.nearest(Q32, X, k=2)
    np.testing.assert_array_equal(r2.distances, r3.distances)
    np.testing.assert_array_equal(r2.indices, r3.indices)
    assert ms.NearestIndex(X64 + 1e-9).dtype == np.float64
    # integer input is converted; float32 near overflow of the squared dot products is exact
    Xi = g.integers(0, 256, (100, 4))
    assert ms.nearest(Xi[:3], Xi, k=1).distances.max() == 0.0
    Xb = (g.standard_normal((200, 4)) * 1e18).astype(np.float32)
    rb = ms.nearest(Xb[:5] * np.float32(1.0000001), Xb, k=1)
    assert list(rb.indices[:, 0]) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("q, x, k, exc, match", [
    (np.zeros((3, 4)), np.zeros((5, 3)), 1, ValueError,
     r"queries must have shape \(M, 3\) to match train \(N = 5, D = 3\).*got shape \(3, 4\)"),
    (np.zeros((0, 3)), np.zeros((5, 3)), 1, ValueError, "queries is empty"),
    (np.zeros((2, 3)), np.zeros((0, 3)), 1, ValueError, "train is empty"),
    (np.array([[0.0, np.nan]]), np.zeros((5, 2)), 1, ValueError,
     r"queries contains NaN or Inf \(first at row 0, column 1\)"),
    (np.zeros((2, 2)), np.array([[0.0, 1.0], [np.inf, 0.0]]), 1, ValueError,
     r"train contains NaN or Inf \(first at row 1"),
    (np.zeros((2, 2)), np.zeros((5, 2)), 0, ValueError, r"1 <= k <= N = 5.*got k = 0"),
    (np.zeros((2, 2)), np.zeros((5, 2)), 6, ValueError, r"1 <= k <= N = 5.*got k = 6"),
    (np.zeros((2, 2)), np.zeros((5, 2)), 1.5, TypeError, "k must be an integer"),
    (np.zeros(3), np.zeros((5, 2)), 1, ValueError,
     r"queries must have shape \(M, 2\) to match train.*got shape \(3,\)"),
    (np.float64(1.0), np.zeros((5, 2)), 1, ValueError, "queries must be a 2-d array"),
    (np.zeros((2, 2)), np.zeros(5), 1, ValueError, "train must be a 2-d array"),
])
def test_errors(q, x, k, exc, match, backend):
    with pytest.raises(exc, match=match):
        ms.nearest(q, x, k=k, backend=backend)


def test_other_errors():
    with pytest.raises(ValueError, match="backend must be"):
        ms.nearest(np.zeros((1, 2)), np.zeros((3, 2)), k=1, backend="gpu")
    with pytest.raises(ValueError, match="num_threads must be >= 0"):
        ms.nearest(np.zeros((1, 2)), np.zeros((3, 2)), k=1, num_threads=-1)
    with pytest.raises(ValueError, match="overflow float64"):
        ms.nearest(np.zeros((1, 2)), np.full((3, 2), 1e200), k=1)


def test_one_point_and_image_stacks_follow_the_denoise_convention(backend):
    g = np.random.default_rng(3)
    X = g.standard_normal((40, 12))
    q = g.standard_normal((5, 12))
    d, i = ms.nearest(q, X, k=3, backend=backend)
    d1, i1 = ms.nearest(q[2], X, k=3, backend=backend)  # one point (D,), as denoise accepts
    assert d1.shape == i1.shape == (3,)
    assert np.array_equal(d1, d[2]) and np.array_equal(i1, i[2])
    # image stacks (M, H, W[, C]) are flattened per row, as the CLI does
    di, ii = ms.nearest(q.reshape(5, 2, 3, 2), X.reshape(40, 2, 3, 2), k=3, backend=backend)
    assert np.array_equal(di, d) and np.array_equal(ii, i)
    di, ii = ms.nearest(q.reshape(5, 2, 3, 2), X, k=3, backend=backend)  # against rows
    assert np.array_equal(ii, i)
    index = ms.NearestIndex(X.reshape(40, 3, 4), backend=backend)
    assert np.array_equal(index.search(q[0], 3).indices, i[0])
    assert np.array_equal(index.search(q.reshape(5, 3, 4), 3).indices, i)
    # the same values per image in another layout (transposed, channel-first) are refused
    with pytest.raises(ValueError, match=r"queries are images of shape \(4, 3\) but train "
                                         r"images have shape \(3, 4\)"):
        index.search(q.reshape(5, 4, 3), 3)
    with pytest.raises(ValueError, match=r"queries are images of shape \(2, 6\)"):
        ms.nearest(q.reshape(5, 2, 6), X.reshape(40, 6, 2), k=3, backend=backend)
    # a gray image with or without its channel axis of 1 is the same layout
    _, ii = ms.nearest(q.reshape(5, 3, 4), X.reshape(40, 3, 4, 1), k=3, backend=backend)
    assert np.array_equal(ii, i)


def test_num_threads_must_be_an_integer_and_index_repr():
    with pytest.raises(TypeError, match=r"num_threads must be an integer >= 0.*got 2.5"):
        ms.NearestIndex(np.zeros((3, 2)), num_threads=2.5)
    with pytest.raises(TypeError, match="num_threads must be an integer"):
        ms.EmpiricalScore(np.zeros((3, 2)), ms.VP(), num_threads=2.5)
    text = repr(ms.NearestIndex(np.zeros((3, 2), np.float32), backend="numpy", num_threads=1))
    assert "object at" not in text
    for part in ("N=3", "D=2", "float32", "'numpy'"):
        assert part in text
