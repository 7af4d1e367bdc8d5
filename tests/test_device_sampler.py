"""ms.sample with a model on device arrays (sampling/device.py): the states stay torch tensors
(CPU torch here; CUDA tensors and CuPy arrays where a GPU is, at the end), the same float64
steps as the NumPy loop and the same Philox noise, so the samples equal the fused CPU loop's to
rounding of the denoiser; saved steps, end rules, batches, start arrays, refusals."""

import mixscore as ms
import numpy as np
import pytest
from conftest import rng
from mixscore.backends import DEVICE_SAMPLE, FUSED_SAMPLE, has
from mixscore.sampling import SAMPLERS
from mixscore.sampling.methods import POSTERIOR_SAMPLERS

torch = pytest.importorskip("torch")
# short grids are stiff on purpose; the warning has its own tests (test_sampling.py)
pytestmark = pytest.mark.filterwarnings("ignore:.*stiffness rho:RuntimeWarning")
pytest.importorskip("array_api_compat")

FIXED_GRID = [s for s in SAMPLERS if s not in ("rk45", "kde", *POSTERIOR_SAMPLERS)]
# float64: the engines' float64 denoisers agree to ~1e-15 relative and the steps are the same
# operations, so the samples do too (measured: <= 2e-15).
TOL64 = 1e-9
# float32: both engines round the same float64 denoiser (equal to ~1e-13) to float32; where it
# lies near a rounding boundary they round to neighbours (one ulp, 6e-8 relative), and the
# steps pass that ulp on with factors |A| <= ~1 (measured: <= 1.5e-7 of the largest entry).
TOL32 = 1e-6


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny problems: torch's intra-op threads only spin against each other (20x slower on a
    busy 2-core machine); no result here depends on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def data(dtype=np.float64, n=40, d=3, seed=0):
    return rng(seed).standard_normal((n, d)).astype(dtype)


def models(X, schedule=None):
    sch = ms.VP() if schedule is None else schedule
    cpu = ms.EmpiricalScore(X, sch)
    dev = ms.EmpiricalScore(torch.from_numpy(X), sch, backend="array_api")
    return cpu, dev


def rel(a, b) -> float:
    """max |a - b| / max |b| for a device result a and a NumPy result b."""
    a = a.numpy() if isinstance(a, torch.Tensor) else a
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("start", ["prior", "exact"])
@pytest.mark.parametrize("sampler", FIXED_GRID)
def test_device_loop_equals_the_fused_cpu_loop(sampler, start):
    cpu, dev = models(data())
    kw = dict(sampler=sampler, steps=60, seed=3, start=start)
    a = ms.sample(cpu, 48, **kw)
    b = ms.sample(dev, 48, **kw)
    assert a.settings["fused"] and not b.settings["fused"]
    assert isinstance(b.samples, torch.Tensor) and b.samples.dtype == torch.float64
    assert b.settings["device"] == "torch on cpu"
    assert rel(b.samples, a.samples) <= TOL64
    if start == "exact":
        np.testing.assert_array_equal(b.start_index, a.start_index)


@pytest.mark.parametrize("sampler", ["euler_maruyama", "heun", "ddpm"])
def test_float32_models_agree_to_float32_rounding(sampler):
    cpu, dev = models(data(np.float32, n=100, d=16))
    kw = dict(sampler=sampler, steps=60, seed=5, start="exact")
    a = ms.sample(cpu, 40, **kw)
    b = ms.sample(dev, 40, **kw)
    assert b.samples.dtype == torch.float32
    assert rel(b.samples, a.samples) <= TOL32


@pytest.mark.parametrize("sampler", FIXED_GRID)
def test_same_operations_as_the_numpy_loop_bit_for_bit(sampler):
    """The device loop and the NumPy loop (run_python) given the same denoiser values (the
    torch model's, read back on the host) perform the same float64 operations: equal bits."""
    from mixscore.sampling.denoisers import DeviceDenoiser, ModelDenoiser
    from mixscore.sampling.device import run_device
    from mixscore.sampling.loop import run_python
    from mixscore.sampling.methods import build_plan

    _, dev = models(data(d=4))
    sch = dev.schedule
    ts = sch.grid(30, "geometric")
    plan = build_plan(sampler, sch, ts, a2=1.0 if sampler == "euler_maruyama" else 0.0)
    x0 = rng(1).standard_normal((9, 4))
    save = np.array([0, 7, 30])
    saved = np.empty((3, 9, 4))
    host = run_python(ModelDenoiser(dev), x0, 5, plan, ts, 11, save, saved, True,
                      lambda k: None)
    end, kept = run_device(DeviceDenoiser(dev), torch.from_numpy(x0), 5, plan, ts, 11, save,
                           True, lambda k: None)
    np.testing.assert_array_equal(end.numpy(), host)
    np.testing.assert_array_equal(kept.numpy(), saved)


def test_saved_steps_end_rules_and_batches():
    cpu, dev = models(data(n=30, d=5))
    for sampler, end in [("euler_maruyama", "no_noise_last"), ("heun", "denoised"),
                         ("ddpm", "denoised"), ("ddim", "as_is")]:
        kw = dict(sampler=sampler, steps=40, seed=2, start="exact", end=end,
                  save_steps=[0, 13, 40])
        a = ms.sample(cpu, 20, **kw)
        b = ms.sample(dev, 20, batch_size=7, **kw)
        assert isinstance(b.saved, torch.Tensor) and tuple(b.saved.shape) == (3, 20, 5)
        assert rel(b.saved, a.saved) <= TOL64 and rel(b.samples, a.samples) <= TOL64
        np.testing.assert_array_equal(b.save_steps, a.save_steps)
        assert b.nfev == a.nfev and b.settings["end"] == end
        if end == "as_is":
            assert torch.equal(b.saved[-1], b.samples)
    # the batch split changes only the rounding of the array-API statistics (its products
    # see another number of queries); the noise streams are the samples' own
    kw = dict(sampler="euler_maruyama", steps=40, seed=2, save_steps=[20])
    whole, split = ms.sample(dev, 20, **kw), ms.sample(dev, 20, batch_size=3, **kw)
    assert rel(split.samples, whole.samples.numpy()) <= 1e-12
    assert rel(split.saved, whole.saved.numpy()) <= 1e-12


def test_the_state_never_goes_to_numpy(monkeypatch):
    """With every conversion of a tensor to NumPy refused, the run completes on tensors."""
    from mixscore.backends import _xp

    _, dev = models(data(d=3))

    def refuse(*_a, **_k):
        raise AssertionError("a tensor was converted to NumPy")

    monkeypatch.setattr(torch.Tensor, "__array__", refuse)
    monkeypatch.setattr(torch.Tensor, "numpy", refuse)
    monkeypatch.setattr(_xp, "to_host", refuse)
    for kw in (dict(sampler="heun", start="exact", end="denoised", save_steps=[0, 10]),
               dict(sampler="euler_maruyama", batch_size=4),
               dict(sampler="ddpm", start=torch.zeros(6, 3))):
        res = ms.sample(dev, 6, steps=20, seed=0, **kw)
        assert isinstance(res.samples, torch.Tensor)
        assert res.saved is None or isinstance(res.saved, torch.Tensor)


def test_start_arrays_of_the_models_library_or_numpy():
    cpu, dev = models(data(d=3))
    x0 = rng(4).standard_normal((5, 3))
    kw = dict(sampler="ddim", steps=25)
    ref = ms.sample(cpu, start=x0, **kw).samples
    ref32 = ms.sample(cpu, start=x0.astype(np.float32), **kw).samples  # (cast to float64)
    for start, want in ((torch.from_numpy(x0), ref), (x0, ref),
                        (torch.from_numpy(x0).reshape(5, 3, 1), ref),
                        (torch.from_numpy(x0).float(), ref32)):
        res = ms.sample(dev, start=start, **kw)
        assert isinstance(res.samples, torch.Tensor) and res.settings["start"] == "user array"
        assert res.samples.dtype == torch.float64
        assert rel(res.samples, want) <= TOL64
    point = ms.sample(dev, 4, start=torch.from_numpy(x0[1]), **kw)
    assert point.settings["start"] == "fixed point"
    assert rel(point.samples, ms.sample(cpu, 4, start=x0[1], **kw).samples) <= TOL64
    with pytest.raises(ValueError, match=r"start array must have shape \(n, 3\).*\(5, 4\)"):
        ms.sample(dev, start=torch.zeros(5, 4))
    with pytest.raises(ValueError, match=r"start point must have shape \(3,\)"):
        ms.sample(dev, 2, start=torch.zeros(4))
    with pytest.raises(ValueError, match="start contains NaN or Inf"):
        ms.sample(dev, start=torch.full((2, 3), float("nan")))


def test_unstable_steps_stop_with_the_step_like_the_cpu_loop():
    cpu, dev = models(data(np.float32, n=20, d=2), ms.VP(beta_max=1e4))
    messages = []
    for m in (cpu, dev):
        with pytest.raises(FloatingPointError, match=r"NaN/Inf or .* at step \d+ \(t = ") as e, \
                pytest.warns(RuntimeWarning, match="stiffness rho > 2"):
            ms.sample(m, 4, sampler="euler_maruyama", steps=40, grid="uniform")
        messages.append(str(e.value))
    assert messages[0] == messages[1]


def test_callbacks_repr_and_save(tmp_path):
    _, dev = models(data(d=3))
    seen = []
    res = ms.sample(dev, 3, sampler="ddpm", steps=20, save_steps=[5], callback_every=5,
                    callback=lambda k, t: seen.append(k))
    assert seen == [5, 10, 15, 20]
    text = repr(res)
    assert "samples=(3, 3) float64 (torch on cpu), saved=(1, 3, 3)" in text
    res.save(tmp_path / "run.npz")
    back = ms.SampleResult.load(tmp_path / "run.npz")
    np.testing.assert_array_equal(back.samples, res.samples.numpy())
    np.testing.assert_array_equal(back.saved, res.saved.numpy())
    assert back.settings["device"] == "torch on cpu" and res.to_dict()["n"] == 3


def test_what_does_not_run_on_the_device_is_refused_by_name():
    _, dev = models(data(d=3))
    for sampler, extra in (("rk45", {}), ("kde", {})):
        with pytest.raises(ValueError, match=rf"sampler='{sampler}' does not run on the "
                                             r"device: a model on torch on cpu"):
            ms.sample(dev, 2, sampler=sampler, **extra)
    with pytest.raises(ValueError, match="fused=True needs .*the cpu or cuda backend"):
        ms.sample(dev, 2, fused=True)  # the fallback has no fused loop
    with pytest.raises(ValueError, match="y= needs an EmpiricalScore built with labels="):
        ms.sample(dev, 2, y=0)
    with pytest.raises(ValueError, match="dtype= must match the model's dtype float64"):
        ms.sample(dev, 2, dtype=np.float32)


def test_capability_and_which_models_sample_on_the_device():
    from mixscore.backends.cuda import CudaBackend
    from mixscore.sampling.device import is_device_model

    cpu, dev = models(data(d=3))
    assert has(dev.backend, DEVICE_SAMPLE) and not has(dev.backend, FUSED_SAMPLE)
    assert not has(cpu.backend, DEVICE_SAMPLE) and DEVICE_SAMPLE in CudaBackend.capabilities
    assert is_device_model(dev) and not is_device_model(cpu)
    # NumPy data on the array-API backend is a host model: the NumPy loop, NumPy results
    host = ms.EmpiricalScore(data(d=3), ms.VP(), backend="array_api")
    assert not is_device_model(host)
    kw = dict(sampler="heun", steps=30, seed=1, start="exact")
    a, b = ms.sample(host, 10, **kw), ms.sample(dev, 10, **kw)
    assert isinstance(a.samples, np.ndarray) and "device" not in a.settings
    assert rel(b.samples, a.samples) <= TOL64


# --- on a GPU (skipped with the reason where there is none) ----------------------------------

from test_gpu import LIB, _apply, needs_cuda, no_device  # noqa: E402 (after the skips above)


def _gpu_run(backend, dtype):
    _, to_dev, to_host = LIB
    X = data(dtype, n=500, d=8, seed=6)
    cpu = ms.EmpiricalScore(X, ms.VP())
    dev = ms.EmpiricalScore(to_dev(X), ms.VP(), backend=backend)
    assert dev.backend.name == backend
    kw = dict(steps=50, seed=7, start="exact", save_steps=[0, 25], end="denoised")
    for sampler in ("euler_maruyama", "heun", "ddpm"):
        a = ms.sample(cpu, 64, sampler=sampler, **kw)
        b = ms.sample(dev, 64, sampler=sampler, batch_size=40, **kw)
        assert "cuda" in b.settings["device"] or "Device" in b.settings["device"]
        assert type(b.samples).__module__.partition(".")[0] == LIB[0].__name__
        tol = TOL64 if dtype == np.float64 else TOL32
        assert rel(to_host(b.samples), a.samples) <= tol
        assert rel(to_host(b.saved), a.saved) <= tol


@_apply(needs_cuda)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cuda_backend_samples_on_the_gpu_like_the_cpu_loop(dtype):
    _gpu_run("cuda", dtype)


@no_device
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fallback_samples_on_the_gpu_like_the_cpu_loop(dtype):
    _gpu_run("cupy", dtype)


@_apply(needs_cuda)
def test_cuda_backend_normals_are_the_host_stream():
    from mixscore import _core

    _, to_dev, to_host = LIB
    model = ms.EmpiricalScore(to_dev(data(n=10, d=3)), ms.VP(), backend="cuda")
    ids = np.array([0, 5, 2**40], dtype=np.int64)
    np.testing.assert_array_equal(to_host(model.backend.normals(9, ids, 17, 5)),
                                  _core.philox_normals(9, ids, 17, 5))


# --- the fused GPU loop (cuda/sampler.cu; tests/test_cuda_host.py runs these on the CPU) -------

def _cuda_pair(X, **kw):
    _, to_dev, _ = LIB
    return (ms.EmpiricalScore(X, ms.VP(), **kw),
            ms.EmpiricalScore(to_dev(X), ms.VP(), backend="cuda", **kw))


@_apply(needs_cuda)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cuda_fused_loop_equals_the_cpu_loop_and_the_device_loop(dtype, samplers=FIXED_GRID,
                                                                  n=48, steps=40, d=8):
    """The GPU loop against the C++ loop (the same float64 steps and Philox noise: equal to
    rounding of the denoiser) and against the device loop on the same model (fused=False), with
    saved steps, the denoised end and batches."""
    to_host = LIB[2]
    cpu, dev = _cuda_pair(data(dtype, n=300, d=d, seed=6))
    tol = TOL64 if dtype == np.float64 else TOL32
    kw = dict(steps=steps, seed=7, start="exact", save_steps=[0, steps // 2], end="denoised")
    for sampler in samplers:
        a = ms.sample(cpu, n, sampler=sampler, **kw)
        b = ms.sample(dev, n, sampler=sampler, batch_size=n // 2 + 1, **kw)
        c = ms.sample(dev, n, sampler=sampler, fused=False, **kw)
        assert b.settings["fused"] and not c.settings["fused"]
        assert type(b.samples).__module__.partition(".")[0] == LIB[0].__name__
        for got in (b, c):
            assert rel(to_host(got.samples), a.samples) <= tol, sampler
            assert rel(to_host(got.saved), a.saved) <= tol, sampler
        np.testing.assert_array_equal(to_host(b.saved[0]), a.saved[0])  # the start


@_apply(needs_cuda)
def test_cuda_fused_loop_regularizers_and_labels(samplers=("ddpm", "heun"), n=20, steps=12):
    """Empirical Bayes (both units), Tikhonov, a perturbation and Smoothing folded into the
    plan, and conditional sampling by label, as the C++ loop runs them."""
    from mixscore.regularizers import EmpiricalBayes, Perturbation, Smoothing, Tikhonov

    to_host = LIB[2]
    r = rng(8)
    X, labels = r.standard_normal((240, 6)), r.integers(0, 3, 240)
    ys = np.arange(n) % 3
    for regs in ([Tikhonov(0.01), EmpiricalBayes(1.0)],
                 [EmpiricalBayes(1e-3, units="density"), Perturbation(0.1 * r.standard_normal(6))],
                 [Smoothing(0.1)]):
        cpu, dev = _cuda_pair(X, labels=labels, regularizer=regs)
        for sampler in samplers:
            kw = dict(sampler=sampler, steps=steps, seed=2, y=ys, save_steps=[steps // 2],
                      end="denoised")
            a, b = ms.sample(cpu, n, **kw), ms.sample(dev, n, **kw)
            assert b.settings["fused"]
            assert rel(to_host(b.samples), a.samples) <= TOL64, (regs, sampler)
            assert rel(to_host(b.saved), a.saved) <= TOL64, (regs, sampler)


@_apply(needs_cuda)
def test_cuda_fused_loop_stops_reports_and_refuses_like_the_cpu_loop():
    to_host = LIB[2]
    cpu, dev = _cuda_pair(data(np.float32, n=20, d=2))
    messages = []
    for m in (cpu, dev):
        unstable = ms.EmpiricalScore(m.train, ms.VP(beta_max=1e4), backend=m.backend.name)
        with pytest.raises(FloatingPointError, match=r"NaN/Inf or .* at step \d+ \(t = ") as e, \
                pytest.warns(RuntimeWarning, match="stiffness rho > 2"):
            ms.sample(unstable, 4, sampler="euler_maruyama", steps=40, grid="uniform")
        messages.append(str(e.value))
    assert messages[0] == messages[1]

    def nested(k, t):  # another GPU loop on this thread, inside the outer one's callback
        ms.sample(dev, 2, sampler="ddpm", steps=3, seed=k)

    with pytest.raises(FloatingPointError) as e, pytest.warns(RuntimeWarning):
        ms.sample(unstable, 4, sampler="euler_maruyama", steps=40, grid="uniform",
                  callback=nested, callback_every=1)
    assert str(e.value) == messages[1]  # its flags are its own: the same step
    seen = []
    res = ms.sample(dev, 3, sampler="ddpm", steps=20, callback_every=5,
                    callback=lambda k, t: seen.append(k))
    assert res.settings["fused"] and seen == [5, 10, 15, 20]

    def fail(k, t):
        raise KeyError(f"stop at {k}")

    with pytest.raises(KeyError, match="stop at 2"):
        ms.sample(dev, 3, sampler="ddpm", steps=20, callback_every=2, callback=fail)
    # the naive sampler's draws (cuda/draws.cu) in the fused loop and in the device loop
    kw = dict(sampler="naive", steps=10, seed=1, R=2, save_steps=[5])
    naive, loop = ms.sample(dev, 3, **kw), ms.sample(dev, 3, fused=False, **kw)
    assert naive.settings["fused"] and not loop.settings["fused"]
    np.testing.assert_array_equal(to_host(naive.samples), to_host(loop.samples))
    assert rel(to_host(naive.samples), ms.sample(cpu, 3, **kw).samples) <= TOL32
    np.testing.assert_array_equal(
        to_host(ms.sample(dev, 5, steps=8, seed=4, fused=True).samples),
        to_host(ms.sample(dev, 5, steps=8, seed=4).samples))


@_apply(needs_cuda)
def test_cuda_fused_loop_does_not_depend_on_query_chunks(monkeypatch, d=24, n=300,
                                                         sampler="heun", steps=4):
    """Samples split into chunks of 128 queries by a small workspace give the same bits."""
    from mixscore.backends import cuda

    _, dev = _cuda_pair(data(np.float32, n=200, d=d, seed=9))
    kw = dict(sampler=sampler, steps=steps, seed=3, start="exact")
    whole = LIB[2](ms.sample(dev, n, **kw).samples)
    monkeypatch.setattr(cuda, "_WORKSPACE_BYTES", 1)
    np.testing.assert_array_equal(LIB[2](ms.sample(dev, n, **kw).samples), whole)


def test_cuda_grid_products_follow_the_float32_bound():
    """The fused loop's logits product per grid point: float64 where the float32 bound of a
    typical state exceeds the cap (small sigma, the slow band), as ``_products`` per call."""
    from mixscore.backends.cuda import CudaBackend

    b = CudaBackend.__new__(CudaBackend)
    b.products, b.dtype, b.dim, b.pmax, b.mu_norm = "auto", np.float32, 64, 30.0, 1.0
    b.u, b.rule = 2.0**-24, {"cap": 0.05}
    sigma2 = np.array([1.0, 0.5, 1e-6, 1e-10])
    got = b._grid_products(np.sqrt(1 - sigma2), sigma2)
    np.testing.assert_array_equal(got, [0, 0, 1, 1])
    b.dtype = np.float64
    np.testing.assert_array_equal(b._grid_products(np.sqrt(1 - sigma2), sigma2), 0)
    b.products = "3xtf32"
    np.testing.assert_array_equal(b._grid_products(np.ones(2), np.ones(2)), 2)


@_apply(needs_cuda)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cuda_fused_steps_are_the_cpu_steps_bit_for_bit(dtype, samplers=FIXED_GRID, n=6):
    """With one training point the denoiser is that point exactly on every engine, so the
    GPU loop's states must equal the C++ loop's bit for bit: the same float64 step operations
    (no FMA contraction), Heun's predictor, the same Philox normals, saves and end rules."""
    to_host = LIB[2]
    cpu, dev = _cuda_pair(data(dtype, n=1, d=5, seed=2))
    for sampler in samplers:
        kw = dict(sampler=sampler, steps=15, seed=11, save_steps=[0, 7, 15], end="denoised")
        a, b = ms.sample(cpu, n, **kw), ms.sample(dev, n, **kw)
        assert b.settings["fused"]
        np.testing.assert_array_equal(to_host(b.saved), a.saved, err_msg=sampler)
        np.testing.assert_array_equal(to_host(b.samples), a.samples, err_msg=sampler)


@_apply(needs_cuda)
@pytest.mark.parametrize("sampler,extra", [("naive", {"R": 3}), ("effective", {"kappa": 0.05})])
def test_cuda_posterior_samplers_equal_the_cpu_paths(sampler, extra, n=10, steps=10, d=24):
    """naive (the draws kernel, cuda/draws.cu, and the float64 mean of the drawn rows) and
    effective (the noise kernel, cuda/cov_noise.cu) in the GPU loop and in the device loop,
    against the CPU's paths (the C++ loop's draws handler; the Python loop with the
    reference's noise): the same jumps, normals and streams, by label."""
    to_host = LIB[2]
    r = rng(12)
    X, labels = r.standard_normal((300, d)), r.integers(0, 2, 300)
    cpu, dev = _cuda_pair(X, labels=labels)
    kw = dict(sampler=sampler, steps=steps, seed=5, y=np.arange(n) % 2,
              save_steps=[steps // 2], **extra)
    a, b = ms.sample(cpu, n, **kw), ms.sample(dev, n, **kw)
    c = ms.sample(dev, n, fused=False, **kw)
    assert a.settings["fused"] == (sampler == "naive")
    assert b.settings["fused"] and not c.settings["fused"]
    for got in (b, c):
        assert rel(to_host(got.samples), a.samples) <= TOL64
        assert rel(to_host(got.saved), a.saved) <= TOL64
    if sampler == "effective":
        with pytest.raises(ValueError, match="fused=True: sampler='effective' runs in the"):
            ms.sample(cpu, n, fused=True, **kw)
