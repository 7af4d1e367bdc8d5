"""The array-API fallback backend (backend="cupy" / "array_api") on NumPy arrays and CPU torch
tensors against the float64 NumPy reference: the core accuracy matrix of test_accuracy.py,
weights, per-query times, sigma -> 0, float64 exactness, tiling, output types, errors."""

import mixscore as ms
import numpy as np
import pytest
from conftest import reference, rng, sigma_schedule
from test_accuracy import SIGMA_FACTORS, check_against_reference, make_data

pytest.importorskip("array_api_compat")
from mixscore.backends import STAT_NAMES, arrayapi  # noqa: E402
from mixscore.partial import PosteriorPartial  # noqa: E402

LIBRARIES = ["numpy", "torch"]


def library(name):
    if name == "torch":
        return pytest.importorskip("torch")
    return np


def as_lib(a, lib):
    return a if lib is np else lib.from_numpy(np.ascontiguousarray(a))


def to_numpy(v):
    return v if isinstance(v, np.ndarray) else v.numpy()


class Host:
    """A model on library ``lib`` seen through NumPy, for the shared accuracy checks."""

    def __init__(self, model, lib):
        self.model, self.lib = model, lib

    def stats(self, x, t):
        st = self.model.stats(as_lib(x, self.lib), t)
        return ms.ScoreStats(**{k: to_numpy(v) for k, v in st.as_dict().items()})


def fallback(X, schedule, lib, weights=None, **kw):
    return Host(ms.EmpiricalScore(as_lib(X, lib), schedule, weights, backend="cupy", **kw), lib)


@pytest.mark.parametrize("lib_name", LIBRARIES)
@pytest.mark.parametrize("d,n", [(1, 7), (2, 1000), (3, 2), (16, 1), (64, 2000), (784, 300)])
def test_core_accuracy_matrix(lib_name, n, d):
    """Random data and 0..255 pixels (large offset), queries at training points, midpoints,
    1000 x scale away and noised, sigma from 1e-4 to 1e4 times the data scale; tiles smaller
    than N."""
    lib, sde = library(lib_name), sigma_schedule()
    for kind in ("normal", "pixels"):
        X = make_data(kind, n, d, seed=n * 1000 + d)
        model, ref = fallback(X, sde, lib, tile=max(1, n // 3)), reference(X, sde)
        scale = float(X.std()) or 1.0
        for f in SIGMA_FACTORS:
            check_against_reference(model, ref, X, f * scale, seed=d + n)


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_weights_and_time_per_query(lib_name):
    """Per-point weights, a VP schedule (alpha != 1) and one time per query."""
    lib, sde, r = library(lib_name), ms.VP(), rng(3)
    X = r.standard_normal((300, 16)).astype(np.float32)
    w = r.uniform(0.1, 5.0, 300)
    t = np.geomspace(1e-4, 1.0, 40)
    x = sde.alpha(t)[:, None] * X[:40] + sde.sigma(t)[:, None] * r.standard_normal((40, 16))
    got = fallback(X, sde, lib, w, tile=64).stats(x.astype(np.float32), t)
    want = reference(X, sde, w).stats(x.astype(np.float32), t)
    np.testing.assert_allclose(got.denoised, want.denoised, atol=1e-5)
    np.testing.assert_allclose(got.logpdf, want.logpdf, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(got.argmax, want.argmax)


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_sigma_to_zero_is_hard_nearest_assignment(lib_name):
    lib, r = library(lib_name), rng(7)
    X = r.standard_normal((2000, 64)).astype(np.float32)
    x = (X[r.integers(0, 2000, 16)] + 0.3 * r.standard_normal((16, 64))).astype(np.float32)
    nearest = np.argmin(((x[:, None, :].astype(np.float64) - X[None]) ** 2).sum(-1), axis=1)
    model = fallback(X, sigma_schedule(), lib, tile=500)
    for sigma in [1e-9, 1e-100, 1e-160]:
        s = model.stats(x, sigma)
        np.testing.assert_array_equal(s.argmax, nearest)
        np.testing.assert_array_equal(s.denoised, X[nearest])
        np.testing.assert_allclose(s.max_weight, 1.0)
        assert np.all(np.isfinite(s.logpdf))


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_float64_model_is_float64_exact(lib_name):
    lib, sde = library(lib_name), sigma_schedule()
    X = rng(4).standard_normal((500, 64))
    model, ref = fallback(X, sde, lib, tile=128), reference(X, sde)
    for sigma in [1e-4, 1e-2, 1.0, 1e2]:
        x = np.concatenate([X[:3], 0.5 * (X[3:6] + X[6:9]), X[:3] + sigma])
        got, want = model.stats(x, sigma), ref.stats(x, sigma)
        atol = 1e-11 + 3e-15 * 64 / sigma**2  # near-ties: as test_accuracy
        np.testing.assert_allclose(got.denoised, want.denoised, rtol=0, atol=atol)
        np.testing.assert_allclose(got.logpdf, want.logpdf, rtol=1e-11)


def test_tiles_bound_memory_and_do_not_change_the_answer(monkeypatch):
    """Every logit block is M x tile (never M x N), and tiles smaller than N give the one-tile
    answer (the exact minimum is the same; only the order of the float64 sums changes)."""
    r = rng(11)
    X = r.integers(0, 256, size=(1000, 32)).astype(np.float32)
    x = (X[:20] + 3.0 * r.standard_normal((20, 32))).astype(np.float32)
    one = ms.EmpiricalScore(X, sigma_schedule(), backend="cupy", tile=1000).stats(x, 5.0)
    widths = []
    approx = arrayapi.ArrayApiBackend._approx

    def spy(self, *args):
        lam, err = approx(self, *args)
        widths.append(lam.shape)
        return lam, err

    monkeypatch.setattr(arrayapi.ArrayApiBackend, "_approx", spy)
    tiled = ms.EmpiricalScore(X, sigma_schedule(), backend="array_api", tile=77).stats(x, 5.0)
    assert max(w[1] for w in widths) == 77 and all(w[0] == 20 for w in widths)
    np.testing.assert_array_equal(tiled.argmax, one.argmax)
    for name in ("denoised", "logpdf", "tau2", "n_eff"):
        np.testing.assert_allclose(getattr(tiled, name), getattr(one, name), rtol=1e-12, atol=1e-12)


def test_expansion_bound_is_rigorous():
    """|A - |x - alpha X_n|^2| <= E(b) for the float32 GEMM expansion about the mean, on pixel
    data (the cancellation case), checked against float64 direct differences."""
    r = rng(5)
    X = r.integers(0, 256, size=(400, 300)).astype(np.float32)
    x = (X[:30] + r.standard_normal((30, 300))).astype(np.float32)
    alpha = r.uniform(0.5, 1.0, 30)
    mu = X.astype(np.float64).mean(0)
    p = (X - mu).astype(np.float32)
    xs = x.astype(np.float64) - alpha[:, None] * mu
    g = (xs.astype(np.float32) @ p.T).astype(np.float64)
    p2 = np.sum(p.astype(np.float64) ** 2, axis=1)
    A = np.sum(xs**2, 1)[:, None] - 2 * alpha[:, None] * g + alpha[:, None] ** 2 * p2
    exact = np.sum((x[:, None, :].astype(np.float64) - alpha[:, None, None] * X[None]) ** 2, -1)
    k0, k1, k2 = arrayapi.expansion_bound(
        np.sqrt(np.sum(xs**2, 1)), alpha * np.linalg.norm(mu), 300, 2.0**-24
    )
    b = alpha[:, None] * np.sqrt(p2)[None]
    E = k0[:, None] + b * (k1[:, None] + b * k2)
    assert np.all(np.abs(A - exact) <= E)
    assert np.abs(A - exact).max() > 1e-3 * E.max()  # the bound is not vacuous either


def test_finalize_equals_the_partial_state_finalize():
    """The device finalizer gives PosteriorPartial.finalize's statistics on the same sums."""
    r = rng(8)
    X = r.standard_normal((300, 8))
    b = arrayapi.ArrayApiBackend(X, r.uniform(0.5, 2.0, 300))
    x, alpha, sigma2 = X[:6] + 0.2, np.full(6, 0.9), np.geomspace(1e-3, 1.0, 6)
    part = b.partial(x, alpha, sigma2)
    acc = b.accumulate(x, alpha, sigma2)
    got = arrayapi.finalize(
        np, acc, x, alpha, sigma2, b.log_weight_sum, set(STAT_NAMES), np.float64
    )
    want = part.finalize()
    assert isinstance(part, PosteriorPartial)
    for name, v in want.items():
        np.testing.assert_array_equal(got[name], v, err_msg=name)


def test_outputs_stay_in_the_callers_library_dtype_and_device():
    torch = pytest.importorskip("torch")
    X = rng(1).standard_normal((200, 5)).astype(np.float32)
    model = ms.EmpiricalScore(torch.from_numpy(X), ms.VP(), backend="cupy")
    assert model.dtype == np.float32 and model.backend.name == "cupy"
    st = model.stats(torch.from_numpy(X[:4]) + 0.1, 0.2)
    types = {k: (type(v), v.dtype, v.device.type) for k, v in st.as_dict().items()}
    for name in ("denoised", "score", "eps"):
        assert types[name] == (torch.Tensor, torch.float32, "cpu")
    for name in ("logpdf", "tau2", "max_weight", "n_eff", "trace_cov"):
        assert types[name] == (torch.Tensor, torch.float64, "cpu")
    assert types["argmax"] == (torch.Tensor, torch.int64, "cpu")
    one = model.denoise(torch.from_numpy(X[0]), 0.2)  # one point: the row axis dropped
    assert isinstance(one, torch.Tensor) and one.shape == (5,)
    host = ms.EmpiricalScore(X, ms.VP(), backend="cupy").stats(X[:4] + 0.1, 0.2)
    assert isinstance(host.denoised, np.ndarray) and host.denoised.dtype == np.float32
    np.testing.assert_allclose(st.denoised.numpy(), host.denoised, rtol=1e-6, atol=1e-6)


def test_auto_keeps_host_data_on_the_cpu_engine():
    torch = pytest.importorskip("torch")
    X = rng(1).standard_normal((50, 3)).astype(np.float32)
    for train in (X, torch.from_numpy(X)):
        model = ms.EmpiricalScore(train, ms.VP())
        assert model.backend.name == ms.available_backends()[0]
        assert isinstance(model.denoise(X[:2], 0.5), np.ndarray)


def test_bad_input_is_refused_by_name():
    torch = pytest.importorskip("torch")
    X = rng(2).standard_normal((20, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="tile .* must be an int >= 1, got 0"):
        ms.EmpiricalScore(X, ms.VP(), backend="cupy", tile=0)
    with pytest.raises(ValueError, match="refine must be 'auto' or 'all', got 'some'"):
        ms.EmpiricalScore(X, ms.VP(), backend="cupy", refine="some")
    with pytest.raises(TypeError, match="train must be float32 or float64.*float16"):
        ms.EmpiricalScore(torch.from_numpy(X).half(), ms.VP(), backend="cupy")
    with pytest.raises(ValueError, match="train must be a 2-d array.*shape \\(4,\\)"):
        ms.EmpiricalScore(torch.from_numpy(X[0]), ms.VP(), backend="cupy")
    bad = torch.from_numpy(X.copy())
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="train contains NaN or Inf"):
        ms.EmpiricalScore(bad, ms.VP(), backend="cupy")
    with pytest.raises(ValueError, match="Smoothing.*per-point bandwidths need NumPy training "
                       "data.*keeps train on its device"):
        ms.EmpiricalScore(torch.from_numpy(X), ms.VP(), backend="cupy",
                          regularizer=ms.regularizers.Smoothing(np.full(20, 0.1)))
    model = ms.EmpiricalScore(torch.from_numpy(X), ms.VP(), backend="cupy")
    with pytest.raises(
        ValueError, match="x must have shape \\(M, 4\\) or \\(4,\\), got shape \\(2, 3\\)"
    ):
        model.stats(torch.zeros(2, 3), 0.5)
    with pytest.raises(TypeError, match="x must be float32 or float64.*int64"):
        model.stats(torch.zeros(2, 4, dtype=torch.int64), 0.5)
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        model.stats(torch.full((2, 4), float("inf")), 0.5)
    with pytest.raises(
        ValueError,
        match="backend must be one of 'auto', 'cpu', 'numpy', "
        "'cupy', 'array_api', 'cuda', got 'gpu'",
    ):
        ms.EmpiricalScore(X, ms.VP(), backend="gpu")


@pytest.mark.parametrize("lib_name", LIBRARIES)
def test_magnitude_checks_and_empty_shards_as_for_host_data(lib_name):
    """Values whose float32 products overflow or underflow are refused for data kept in its
    library as for NumPy data on the C++ engine (were silently wrong there); an empty shard
    gives the merge's identity."""
    lib = library(lib_name)
    X = rng(2).standard_normal((120, 8))
    for scale, match in [(1e20, "train has values up to .* would overflow float32"),
                         (1e-25, "train varies by at most .* underflow")]:
        data = (X * scale).astype(np.float32)
        for backend in ("cpu", "cupy"):
            with pytest.raises(ValueError, match=match):
                ms.EmpiricalScore(as_lib(data, lib), ms.EDM(sigma_max=1e30), backend=backend)
    model = ms.EmpiricalScore(as_lib(X.astype(np.float32), lib), ms.VP(), backend="cupy")
    with pytest.raises(ValueError, match="x has values up to .* would overflow float32"):
        model.denoise(as_lib((X[:2] * 1e20).astype(np.float32), lib), 0.5)
    empty = ms.EmpiricalScore(as_lib(np.zeros((0, 8)), lib), ms.VP(), backend="cupy")
    whole = ms.EmpiricalScore(as_lib(X, lib), ms.VP(), backend="cupy")
    q = X[:3] + 0.1
    got = ms.merge([empty.partial(q, 0.5), whole.partial(q, 0.5)]).finalize()
    np.testing.assert_array_equal(got["logpdf"], to_numpy(whole.stats(q, 0.5).logpdf))


def test_missing_array_api_compat_is_named(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "array_api_compat", None)
    X = rng(2).standard_normal((20, 4)).astype(np.float32)
    with pytest.raises(ImportError, match="needs the array-api-compat package.*mixscore\\[gpu\\]"):
        ms.EmpiricalScore(X, ms.VP(), backend="cupy")


def test_tf32_is_off_inside_and_restored_after():
    """The float32 products of the fallback never run in TF32 (its bound assumes 24-bit
    products): switched off for the call, the caller's setting restored after."""
    torch = pytest.importorskip("torch")
    from mixscore.backends._xp import _tf32_off

    mm = torch.backends.cuda.matmul
    before = mm.allow_tf32
    mm.allow_tf32 = True
    try:
        with _tf32_off(mm):
            assert mm.allow_tf32 is False and mm.fp32_precision == "ieee"
        assert mm.allow_tf32 is True
    finally:
        mm.allow_tf32 = before
