"""GPU backends where a GPU is: the cuda kernels (mixscore._cuda) and the array-API fallback on
CUDA tensors / CuPy arrays, against the CPU engine and the float64 reference on the core
accuracy matrix; the same Philox noise as the CPU; the same nearest indices, d1 = 0 for copies.
Everything here skips with its reason where there is no CUDA device or no extension."""

import mixscore as ms
import numpy as np
import pytest
from conftest import reference, rng, sigma_schedule
from test_accuracy import SIGMA_FACTORS, check_against_reference, make_data, make_queries


def _gpu_library():
    """(module, to_device, to_host) of an installed library with a visible CUDA device."""
    try:
        import torch

        if torch.cuda.is_available():
            return (
                torch,
                lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda(),
                (lambda v: v.cpu().numpy()),
            )
    except ImportError:
        pass
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy, cupy.asarray, cupy.asnumpy
    except Exception:  # noqa: BLE001 (no CuPy, or a CuPy without a driver)
        pass
    return None


def _extension():
    try:
        from mixscore import _cuda
    except ImportError:
        return None
    return _cuda


LIB = _gpu_library()
EXT = _extension()
no_device = pytest.mark.skipif(
    LIB is None, reason="no CUDA device (or neither torch with CUDA nor CuPy installed)"
)
no_ext = pytest.mark.skipif(
    EXT is None, reason="mixscore._cuda not built (no CUDA compiler at install time)"
)
needs_cuda = [
    no_ext,
    pytest.mark.skipif(EXT is not None and EXT.device_count() == 0, reason="no CUDA device"),
] + [no_device]


class OnDevice:
    """A model on the GPU seen through NumPy (inputs moved there, outputs back)."""

    def __init__(self, X, schedule, backend, weights=None, **kw):
        _, to_dev, self.to_host = LIB
        self.to_dev = to_dev
        self.model = ms.EmpiricalScore(to_dev(X), schedule, weights, backend=backend, **kw)

    def stats(self, x, t):
        st = self.model.stats(self.to_dev(x), t)
        return ms.ScoreStats(**{k: self.to_host(v) for k, v in st.as_dict().items()})


def _apply(marks):
    def wrap(f):
        for m in marks:
            f = m(f)
        return f

    return wrap


@pytest.mark.parametrize("backend", ["cuda", "cupy"])
@pytest.mark.parametrize(
    "d,n", [(1, 7), (2, 1000), (3, 2), (16, 1), (64, 5000), (784, 1000), (3072, 2000)]
)
@no_device
def test_core_accuracy_matrix_on_the_gpu(backend, n, d):
    if backend == "cuda" and (EXT is None or EXT.device_count() == 0):
        pytest.skip("mixscore._cuda not built" if EXT is None else "no CUDA device")
    sde = sigma_schedule()
    for kind in ("normal", "pixels"):
        X = make_data(kind, n, d, seed=n * 1000 + d)
        model, ref = OnDevice(X, sde, backend), reference(X, sde)
        cpu = ms.EmpiricalScore(X, sde, backend="cpu")
        scale = float(X.std()) or 1.0
        for f in SIGMA_FACTORS:
            check_against_reference(model, ref, X, f * scale, seed=d + n)
            check_against_reference(model, cpu, X, f * scale, seed=d + n)


@pytest.mark.parametrize("backend", ["cuda", "cupy"])
@no_device
def test_weights_time_per_query_and_argmax(backend):
    if backend == "cuda" and (EXT is None or EXT.device_count() == 0):
        pytest.skip("mixscore._cuda not built" if EXT is None else "no CUDA device")
    sde, r = ms.VP(), rng(3)
    X = r.standard_normal((3000, 64)).astype(np.float32)
    w = r.uniform(0.1, 5.0, 3000)
    t = np.geomspace(1e-4, 1.0, 40)
    x = sde.alpha(t)[:, None] * X[:40] + sde.sigma(t)[:, None] * r.standard_normal((40, 64))
    x = x.astype(np.float32)
    got = OnDevice(X, sde, backend, w).stats(x, t)
    want = reference(X, sde, w).stats(x, t)
    np.testing.assert_allclose(got.denoised, want.denoised, atol=1e-5)
    np.testing.assert_allclose(got.logpdf, want.logpdf, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(got.argmax, want.argmax)


@_apply(needs_cuda)
def test_outputs_stay_on_the_device():
    lib, to_dev, _ = LIB
    X = rng(1).standard_normal((500, 8)).astype(np.float32)
    model = ms.EmpiricalScore(to_dev(X), ms.VP(), backend="auto")
    assert model.backend.name == "cuda"
    st = model.stats(to_dev(X[:4]) + 0.1, 0.2)
    for v in st.as_dict().values():
        assert type(v).__module__.startswith(lib.__name__)
        assert "cuda" in str(getattr(v, "device", "cuda"))


@_apply(needs_cuda)
def test_nearest_matches_the_cpu_engine_bit_for_bit():
    from mixscore.backends import cuda

    _, to_dev, to_host = LIB
    r = rng(2)
    for d in (2, 64, 784):
        X = r.integers(0, 256, size=(3000, d)).astype(np.float32)
        q = np.concatenate([X[:10], X[10:20] + r.standard_normal((10, d)).astype(np.float32)])
        sq, idx = cuda.nearest(to_dev(q), to_dev(X), 4)
        dist_cpu, idx_cpu = ms.nearest(q, X, k=4)
        np.testing.assert_array_equal(to_host(idx), idx_cpu)
        np.testing.assert_array_equal(np.sqrt(to_host(sq)), dist_cpu)
        assert np.all(to_host(sq)[:10, 0] == 0.0)  # copies: d1 = 0 exactly


@_apply(needs_cuda)
def test_philox_noise_equals_the_cpu_stream():
    from mixscore import _core
    from mixscore.backends import cuda

    _, to_dev, to_host = LIB
    samples = np.array([0, 1, 7, 123456789, 2**40], dtype=np.int64)
    for step, d in [(0, 1), (3, 64), (999, 3073)]:
        z = to_host(cuda.philox_normals(42, to_dev(samples), step, d))
        np.testing.assert_array_equal(z, _core.philox_normals(42, samples, step, d))


# D = 2: every entry exact (no logits); 20, 200: the chunk's logits with the bound
DRAW_CASES = ((2, 3000), (20, 1500), (200, 1100))


def _near_training(n: int, d: int, m: int, dtype, seed: int):
    """(generator, training set (n, d), m queries near its first points)."""
    r = rng(seed)
    X = r.standard_normal((n, d)).astype(dtype)
    return r, X, (0.9 * X[:m] + 0.3 * r.standard_normal((m, d))).astype(dtype)


@_apply(needs_cuda)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_draws_on_the_gpu_are_the_reference_draws(dtype, cases=DRAW_CASES, ts=(0.01, 0.2, 1.0)):
    """The draws kernel (cuda/draws.cu) against mixscore.covariance.posterior_draws (the same
    jumps over the same Philox streams in index order): in float64 the same indices; in
    float32 the same where the logits agree, as the C++ handler (tests/test_draws.py)."""
    lib, to_dev, to_host = LIB
    for d, n in cases:
        r, X, x = _near_training(n, d, 40, dtype, seed=d)
        w = r.uniform(0.2, 3.0, n)
        host = ms.EmpiricalScore(X, ms.VP(), weights=w, backend="numpy")
        dev = ms.EmpiricalScore(to_dev(X), ms.VP(), weights=w, backend="cuda")
        for t in ts:
            got = dev.posterior_draws(to_dev(x), t, 3, seed=11)
            assert type(got).__module__.partition(".")[0] == lib.__name__
            want = host.posterior_draws(x, t, 3, seed=11)
            agree = np.mean(to_host(got) == want)
            assert agree >= (1.0 if dtype == np.float64 else 0.97), (d, t, agree)
            assert len(np.unique(want)) > 1


@_apply(needs_cuda)
def test_draws_on_the_gpu_follow_the_weights_labels_and_many_draws():
    """Chi-squared of 20000 draws against w_n from a direct float64 softmax; draws by label
    (indices of the full set); R above one launch's 256 draws (streams first_step + r)."""
    scipy_stats = pytest.importorskip("scipy.stats")
    _, to_dev, to_host = LIB
    r = rng(24)
    X = r.standard_normal((6, 24))
    pi = np.array([1.0, 2.0, 0.5, 1.0, 3.0, 1.0])
    dev = ms.EmpiricalScore(to_dev(X), ms.VP(), weights=pi, backend="cuda")
    sch, t = ms.VP(), 0.9
    a, s2 = float(sch.alpha(t)), float(sch.sigma2(t))
    x = a * X.mean(0) + 0.2 * r.standard_normal(24)
    logits = np.log(pi) - ((x - a * X) ** 2).sum(1) / (2 * s2)
    w = np.exp(logits - logits.max())
    w /= w.sum()
    assert w.min() > 0.01  # every cell is populated: the test is not degenerate
    counts = np.bincount(to_host(dev.posterior_draws(to_dev(np.tile(x, (50, 1))), t, 400,
                                                     seed=4)).ravel(), minlength=6)
    assert scipy_stats.chisquare(counts, w * counts.sum()).pvalue > 1e-3
    labels = r.integers(0, 3, 900)
    X = r.standard_normal((900, 20))
    host = ms.EmpiricalScore(X, ms.VP(), labels=labels, backend="numpy")
    dev = ms.EmpiricalScore(to_dev(X), ms.VP(), labels=labels, backend="cuda")
    x, y = X[:30] + 0.2 * r.standard_normal((30, 20)), np.arange(30) % 3
    got = to_host(dev.posterior_draws(to_dev(x), 0.3, 300, seed=5, y=y))
    np.testing.assert_array_equal(got, host.posterior_draws(x, 0.3, 300, seed=5, y=y))
    assert np.all(labels[got] == y[:, None])


@_apply(needs_cuda)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cov_noise_on_the_gpu_is_the_reference_noise(dtype, cases=DRAW_CASES,
                                                    ts=(0.01, 0.2, 1.0)):
    """The covariance-noise kernel (cuda/cov_noise.cu) against mixscore.covariance.cov_noise:
    the same Philox normals per (query, point), every kept weight exact; the posterior means
    of the cuda pass (float32 data: to its accuracy); by label."""
    lib, to_dev, to_host = LIB
    tol = 1e-9 if dtype == np.float64 else 1e-5
    for d, n in cases:
        r, X, x = _near_training(n, d, 30, dtype, seed=d + 1)
        labels = r.integers(0, 2, n)
        host = ms.EmpiricalScore(X, ms.VP(), labels=labels, backend="numpy")
        dev = ms.EmpiricalScore(to_dev(X), ms.VP(), labels=labels, backend="cuda")
        for t in ts:
            for y in (None, np.arange(30) % 2):
                got = dev.cov_noise(to_dev(x), t, seed=3, y=y)
                assert type(got).__module__.partition(".")[0] == lib.__name__
                want = host.cov_noise(x, t, seed=3, y=y)
                # (a posterior on one point: no spread, the noise is 0)
                scale = max(np.abs(want).max(), 1e-6 * np.abs(X).max())
                err = np.abs(to_host(got) - want).max() / scale
                assert err <= tol, (d, t, y is None, err)


@_apply(needs_cuda)
def test_a_nan_state_gives_no_index_past_the_training_set():
    """The fused loop runs one step past a NaN/Inf state before it sees the flag: the pass
    must then give an index inside the training set (not the sentinel N)."""
    _, to_dev, to_host = LIB
    for d in (3, 20):  # direct pass, tiled pass
        X = rng(d).standard_normal((300, d))
        dev = ms.EmpiricalScore(to_dev(X), ms.VP(), backend="cuda")
        nan = to_dev(np.full((2, d), np.nan))
        acc = dev.backend.accumulate(nan, np.full(2, 0.8), np.full(2, 0.36))
        np.testing.assert_array_equal(to_host(acc["best"]), [0, 0])


@no_device
def test_fallback_refuses_tf32_silently_enabled():
    """With TF32 allowed globally, the fallback still computes true float32 products (and
    restores the setting)."""
    lib, to_dev, _ = LIB
    if lib.__name__ != "torch":
        pytest.skip("TF32 switch tested with torch")
    import torch

    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        X = make_data("pixels", 2000, 784, seed=5)
        sde = sigma_schedule()
        model, ref = OnDevice(X, sde, "cupy"), reference(X, sde)
        check_against_reference(model, ref, X, 0.01 * float(X.std()), seed=5)
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


@_apply(needs_cuda)
@pytest.mark.parametrize("d", [2, 64, 784])
def test_cuda_results_do_not_depend_on_the_query_chunking(monkeypatch, d):
    """The tiled pass in chunks of 128 queries gives the same bits as in one chunk (every
    sum has a fixed order); D = 2 runs the direct kernel, which has no chunks."""
    from mixscore.backends import cuda

    _, to_dev, to_host = LIB
    X = make_data("pixels", 3000, d, seed=d)
    x, _ = make_queries(X, 3.0, seed=d)
    x = np.concatenate([x] * (300 // len(x) + 1))[:300]  # more than two chunks of 128
    model = ms.EmpiricalScore(to_dev(X), ms.VE(), backend="cuda")
    t = 0.2
    whole = {k: to_host(v) for k, v in model.stats(to_dev(x), t).as_dict().items()}
    monkeypatch.setattr(cuda, "_WORKSPACE_BYTES", 128 * 3000 * 4)
    chunked = {k: to_host(v) for k, v in model.stats(to_dev(x), t).as_dict().items()}
    for k in whole:
        np.testing.assert_array_equal(whole[k], chunked[k], err_msg=k)


@_apply(needs_cuda)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("refine", ["auto", "all"])
def test_cuda_float64_data_and_refine_all(dtype, refine):
    _, to_dev, _ = LIB
    sde = sigma_schedule()
    X = make_data("pixels", 1500, 784, seed=11).astype(dtype)
    model, ref = OnDevice(X, sde, "cuda", refine=refine), reference(X, sde)
    scale = float(X.std())
    for f in (1e-4, 1e-2, 1.0, 10.0, 1e4):
        check_against_reference(model, ref, X, f * scale, seed=11)


@_apply(needs_cuda)
def test_cuda_wide_products_in_the_slow_band():
    """Spread posteriors of off-centre data at D = 3072: the float32 bound exceeds the cap for
    every entry, so the pass takes float64 products (no mass refinement) and stays exact."""
    from mixscore.backends import cuda

    _, to_dev, _ = LIB
    sde = sigma_schedule()
    X = make_data("normal", 2000, 3072, seed=12) + np.float32(3.0)
    model, ref = OnDevice(X, sde, "cuda"), reference(X, sde)
    backend = model.model.backend
    calls = []
    wide = backend._wide
    backend._wide = lambda *a: calls.append(wide(*a)) or calls[-1]
    check_against_reference(model, ref, X, 5.0 * float(X.std()), seed=12)
    assert any(calls) and isinstance(backend, cuda.CudaBackend)


@_apply(needs_cuda)
@pytest.mark.parametrize("products", ["float32", "float64", "3xtf32"])
def test_cuda_products_meet_the_core_accuracy(products):
    """Every logits product (float32 SIMT, float64 tensor cores, the opt-in 3xTF32) with the
    exact refinement of what carries weight meets the core accuracy contract."""
    sde = sigma_schedule()
    for kind, d in (("pixels", 784), ("normal", 3072)):
        X = make_data(kind, 2000, d, seed=d)
        model, ref = OnDevice(X, sde, "cuda", products=products), reference(X, sde)
        for f in SIGMA_FACTORS:
            check_against_reference(model, ref, X, f * float(X.std()), seed=d)


@pytest.mark.parametrize("backend", ["cuda", "cupy"])
@no_device
def test_labels_regularizers_and_posterior_samplers_on_the_gpu(backend):
    """A labelled, regularized model on the GPU: statistics equal the float64 reference,
    outputs stay on the device; conditional regularized and naive sampling equal the CPU."""
    if backend == "cuda" and (EXT is None or EXT.device_count() == 0):
        pytest.skip("mixscore._cuda not built" if EXT is None else "no CUDA device")
    from mixscore.regularizers import EmpiricalBayes, Perturbation, Smoothing, Tikhonov

    lib, to_dev, to_host = LIB
    r = rng(31)
    X = r.standard_normal((3000, 32))
    labels = r.integers(0, 5, 3000)
    regs = [Smoothing(0.05), Tikhonov(0.01), EmpiricalBayes(1.0),
            Perturbation(np.linspace(-0.1, 0.1, 32))]
    kw = dict(labels=labels, regularizer=regs)
    ref = ms.EmpiricalScore(X, ms.VP(), backend="numpy", **kw)
    dev = ms.EmpiricalScore(to_dev(X), ms.VP(), backend=backend, **kw)
    x, y = r.standard_normal((64, 32)), r.integers(0, 5, 64)
    include = ("score", "logpdf", "tau2", "argmax", "trace_cov", "entropy")
    got = dev.stats(to_dev(x), 0.3, include, y=y).as_dict()
    want = ref.stats(x, 0.3, include, y=y).as_dict()
    for name in include:
        assert type(got[name]).__module__.partition(".")[0] == lib.__name__, name
        np.testing.assert_allclose(to_host(got[name]), want[name], rtol=1e-10, atol=1e-10)
    cpu = ms.EmpiricalScore(X, ms.VP(), **kw)
    ys = np.arange(40) % 5
    for sampler in ("ddpm", "euler_maruyama"):
        a = ms.sample(cpu, 40, sampler=sampler, steps=30, seed=1, y=ys)
        b = ms.sample(dev, 40, sampler=sampler, steps=30, seed=1, y=ys)
        assert np.abs(to_host(b.samples) - a.samples).max() <= 1e-9 * np.abs(a.samples).max()
    plain = ms.EmpiricalScore(to_dev(X), ms.VP(), backend=backend, labels=labels)
    a = ms.sample(ms.EmpiricalScore(X, ms.VP(), labels=labels), 40, sampler="naive", R=2,
                  steps=30, seed=1, y=ys)
    b = ms.sample(plain, 40, sampler="naive", R=2, steps=30, seed=1, y=ys)
    np.testing.assert_allclose(to_host(b.samples), a.samples, rtol=0, atol=1e-12)


@no_device
def test_torch_targets_stay_on_the_gpu():
    """mixscore.torch with a model on the GPU: a CUDA batch's targets come back on its device
    and dtype, equal to the host model's."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA torch")
    import mixscore.torch as mt

    X = rng(41).standard_normal((2000, 48)).astype(np.float32)
    dev = ms.EmpiricalScore(torch.from_numpy(X).cuda(), ms.VP())
    host = ms.EmpiricalScore(X, ms.VP())
    x_t = torch.randn(32, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    got = mt.targets(dev, x_t.cuda(), 0.2)
    want = mt.targets(host, x_t, 0.2)
    assert got.eps.device.type == "cuda" and got.eps.dtype == torch.float32
    np.testing.assert_allclose(got.denoised.cpu().numpy(), want.denoised.numpy(), atol=1e-5)
    floor = mt.dsm_floor(dev, x_t.cuda(), 0.2, "x0")
    np.testing.assert_allclose(floor.cpu().numpy(), mt.dsm_floor(host, x_t, 0.2, "x0").numpy(),
                               rtol=1e-5, atol=1e-6)
