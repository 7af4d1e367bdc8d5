"""Labels, regularizers and the posterior operations of a model kept on a device (a torch
tensor on the array-API backend; CPU torch here, CUDA tensors in test_gpu.py): every output
stays a tensor of the model's library and equals the NumPy model's (the float64 reference,
backend="numpy") to the core tolerances; the samplers with labels, regularizers and the
posterior samplers (naive, effective) equal the CPU paths."""

import mixscore as ms
import numpy as np
import pytest
from conftest import rng
from mixscore.regularizers import EmpiricalBayes, Perturbation, Smoothing, Tikhonov

torch = pytest.importorskip("torch")
pytest.importorskip("array_api_compat")
pytestmark = pytest.mark.filterwarnings("ignore:.*stiffness rho:RuntimeWarning")

FIELDS = ("score", "denoised", "eps", "logpdf", "tau2", "max_weight", "argmax", "n_eff",
          "trace_cov", "entropy")
# float64: the two passes agree to ~1e-15 relative (each weight from exact float64 logits);
# float32 data: the fallback's weights carry <= ~1e-6 nats of error (arrayapi.py), vectors are
# rounded to float32 at the end.
TOL = {np.float64: 1e-11, np.float32: 2e-6}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pair(X, dtype=np.float64, **kw):
    """(the float64 NumPy reference model, the same model on a torch tensor), of the same
    numbers (X rounded to ``dtype``)."""
    ref = ms.EmpiricalScore(X.astype(dtype).astype(np.float64), ms.VP(), backend="numpy", **kw)
    dev = ms.EmpiricalScore(torch.from_numpy(X.astype(dtype)), ms.VP(), backend="array_api",
                            **kw)
    return ref, dev


def check_stats(ref_stats, dev_stats, dtype, fields=FIELDS):
    a, b = ref_stats.as_dict(), dev_stats.as_dict()
    for name in fields:
        got = b[name]
        assert isinstance(got, torch.Tensor), (name, type(got))
        want = a[name]
        if name == "argmax":
            np.testing.assert_array_equal(got.numpy(), want)
            continue
        if name in ("score", "denoised", "eps"):
            assert got.dtype == (torch.float32 if dtype == np.float32 else torch.float64)
        g = got.numpy().astype(np.float64)
        scale = np.maximum(1.0, np.abs(want))
        assert np.all(np.abs(g - want) <= TOL[dtype] * scale), (name, np.abs(g - want).max())


REGULARIZERS = {
    "tikhonov": [Tikhonov(0.02)],
    "tikhonov(t)": [Tikhonov(lambda t: 0.01 * (1.0 + t))],
    "eb kernel sum": [EmpiricalBayes(3.0)],
    "eb density": [EmpiricalBayes(0.05, units="density")],
    "smoothing": [Smoothing(0.2)],
    "perturbation": [Perturbation(np.array([0.3, -0.1, 0.2, 0.0]))],
    "all": [Smoothing(0.1), Tikhonov(0.01), EmpiricalBayes(1.0),
            Perturbation(np.array([0.1, 0.0, -0.2, 0.05]))],
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(REGULARIZERS))
def test_regularized_statistics_equal_the_reference(name, dtype):
    X = rng(1).standard_normal((300, 4))
    ref, dev = pair(X, dtype, regularizer=REGULARIZERS[name])
    x = (rng(2).standard_normal((25, 4)) * 1.5).astype(dtype).astype(np.float64)
    for t in (0.05, 0.4, np.linspace(0.01, 1.0, 25)):
        check_stats(ref.stats(x, t, FIELDS),
                    dev.stats(torch.from_numpy(x.astype(dtype)), t, FIELDS), dtype)


def test_regularized_scores_leave_the_state_on_the_device(monkeypatch):
    """Only the per-query numbers the policies need cross to the host (no host copy of the
    pass's state unless entropy is asked for)."""
    from mixscore.backends.arrayapi import DevicePartial

    X = rng(27).standard_normal((100, 4))
    _, dev = pair(X, regularizer=REGULARIZERS["all"])

    def no_host_copy(self):
        raise AssertionError("the partial state was copied to the host")

    monkeypatch.setattr(DevicePartial, "host", no_host_copy)
    st = dev.stats(torch.from_numpy(X[:5]), 0.3, ("score", "logpdf", "trace_cov", "tau2"))
    assert all(isinstance(v, torch.Tensor) for v in st.as_dict().values())
    with pytest.raises(AssertionError, match="copied to the host"):
        dev.stats(torch.from_numpy(X[:5]), 0.3, "entropy")


def test_callable_perturbation_sees_and_returns_device_arrays():
    X = rng(3).standard_normal((80, 3))
    seen = []

    def e_dev(x, t):
        seen.append(type(x))
        return 0.5 * x * torch.from_numpy(t)[:, None]

    def e_host(x, t):
        return 0.5 * x * t[:, None]

    ref = ms.EmpiricalScore(X, ms.VP(), backend="numpy", regularizer=Perturbation(e_host))
    dev = ms.EmpiricalScore(torch.from_numpy(X), ms.VP(), backend="array_api",
                            regularizer=Perturbation(e_dev))
    x = rng(4).standard_normal((10, 3))
    got = dev.score(torch.from_numpy(x), 0.3)
    assert seen == [torch.Tensor] and isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), ref.score(x, 0.3), rtol=1e-12, atol=1e-12)
    bad = ms.EmpiricalScore(torch.from_numpy(X), ms.VP(), backend="array_api",
                            regularizer=Perturbation(lambda x, t: x[:, :2]))
    with pytest.raises(ValueError, match=r"e\(x, t\) must return shape \(10, 3\).*\(10, 2\)"):
        bad.score(torch.from_numpy(x), 0.3)
    nan = ms.EmpiricalScore(torch.from_numpy(X), ms.VP(), backend="array_api",
                            regularizer=Perturbation(lambda x, t: x * float("nan")))
    with pytest.raises(ValueError, match=r"e\(x, t\) returned NaN or Inf"):
        nan.score(torch.from_numpy(x), 0.3)


def test_bounded_regularizer_at_t_zero_is_the_hard_assignment():
    """Tikhonov(c > 0) at t = 0 (sigma = 0): the posterior is the nearest training point; the
    log-density is +inf at a training point and -inf elsewhere, as on the host."""
    X = rng(5).standard_normal((50, 3))
    ref, dev = pair(X, regularizer=Tikhonov(0.05))
    x = np.vstack([X[:3], rng(6).standard_normal((4, 3))])
    a, b = ref.stats(x, 0.0), dev.stats(torch.from_numpy(x), 0.0)
    np.testing.assert_array_equal(b.argmax.numpy(), a.argmax)
    np.testing.assert_array_equal(b.logpdf.numpy(), a.logpdf)
    assert np.all(np.isposinf(a.logpdf[:3])) and np.all(np.isneginf(a.logpdf[3:]))
    np.testing.assert_allclose(b.score.numpy(), (X[a.argmax] - x) / 0.05, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conditional_statistics_equal_the_reference(dtype):
    """One label, one label per query (NumPy or a tensor), weights: each query's statistics
    are those of its label's points; argmax is an index of the full training set."""
    X = rng(7).standard_normal((240, 5))
    labels = rng(8).integers(0, 4, 240)
    w = rng(9).uniform(0.5, 2.0, 240)
    ref, dev = pair(X, dtype, labels=labels, weights=w)
    x = rng(10).standard_normal((30, 5)).astype(dtype).astype(np.float64)
    xd = torch.from_numpy(x.astype(dtype))
    y = rng(11).integers(0, 4, 30)
    for yy in (2, y, torch.from_numpy(y)):
        check_stats(ref.stats(x, 0.3, FIELDS, y=np.asarray(yy)), dev.stats(xd, 0.3, FIELDS, y=yy),
                    dtype)
    sub = ms.EmpiricalScore(X.astype(dtype)[labels == 1].astype(np.float64), ms.VP(),
                            w[labels == 1], backend="numpy")
    got = dev.denoise(xd, 0.3, y=1).numpy()
    np.testing.assert_allclose(got, sub.denoise(x, 0.3), rtol=TOL[dtype], atol=TOL[dtype])
    with pytest.raises(ValueError, match="y: label 7 has no training points"):
        dev.score(xd, 0.3, y=7)


def test_labels_and_regularizers_compose():
    X = rng(12).standard_normal((200, 4))
    labels = np.repeat(["cat", "dog"], 100)
    regs = REGULARIZERS["all"]
    ref, dev = pair(X, labels=labels, regularizer=regs)
    x = rng(13).standard_normal((12, 4))
    y = np.where(np.arange(12) % 3 == 0, "cat", "dog")
    check_stats(ref.stats(x, 0.2, FIELDS, y=y), dev.stats(torch.from_numpy(x), 0.2, FIELDS, y=y),
                np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_posterior_operations_come_back_as_tensors(dtype):
    X = rng(14).standard_normal((150, 4))
    labels = rng(15).integers(0, 3, 150)
    ref, dev = pair(X, dtype, labels=labels)
    x = rng(16).standard_normal((9, 4)).astype(dtype).astype(np.float64)
    xd = torch.from_numpy(x.astype(dtype))
    v = rng(17).standard_normal((9, 4))
    tol = dict(rtol=10 * TOL[dtype], atol=10 * TOL[dtype])
    for y in (None, labels[:9]):
        got = dev.cov_matvec(xd, 0.3, torch.from_numpy(v), y=y)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), ref.cov_matvec(x.astype(dtype), 0.3, v, y=y),
                                   **tol)
        for op in ("cov", "hessian_logpdf", "cov_noise"):
            got = getattr(dev, op)(xd, 0.3, y=y)
            assert isinstance(got, torch.Tensor), op
            np.testing.assert_allclose(got.numpy(), getattr(ref, op)(x.astype(dtype), 0.3, y=y),
                                       **tol)
        draws = dev.posterior_draws(xd, 0.3, 5, seed=2, y=y)
        assert isinstance(draws, torch.Tensor) and draws.dtype == torch.int64
        if dtype == np.float64:  # (float32 weights can move a draw across a CDF step)
            np.testing.assert_array_equal(draws.numpy(),
                                          ref.posterior_draws(x, 0.3, 5, seed=2, y=y))
    single = dev.cov_matvec(xd[0], 0.3, torch.from_numpy(v[0]))
    assert tuple(single.shape) == (4,)


def test_weighted_entropy_uses_the_dense_pass():
    X = rng(18).standard_normal((120, 3))
    w = rng(19).uniform(0.1, 3.0, 120)
    ref, dev = pair(X, weights=w)
    x = rng(20).standard_normal((8, 3))
    check_stats(ref.stats(x, 0.5, FIELDS), dev.stats(torch.from_numpy(x), 0.5, "entropy"),
                np.float64, fields=("entropy",))


SAMPLERS = ["euler_maruyama", "heun", "ddim", "ddpm", "splitting"]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_conditional_regularized_sampling_equals_the_fused_loop(sampler):
    """Labels and regularizers on the device loop: the fused C++ loop's samples (which runs
    each label with its sub-model and folds the regularizers into its coefficients)."""
    X = rng(21).standard_normal((60, 3))
    labels = rng(22).integers(0, 3, 60)
    regs = [Smoothing(0.05), Tikhonov(0.01), EmpiricalBayes(1e-3),
            Perturbation(np.array([0.1, 0.0, -0.1]))]
    cpu = ms.EmpiricalScore(X, ms.VP(), labels=labels, regularizer=regs)
    dev = ms.EmpiricalScore(torch.from_numpy(X), ms.VP(), backend="array_api", labels=labels,
                            regularizer=regs)
    y = np.arange(30) % 3
    kw = dict(sampler=sampler, steps=40, seed=3, batch_size=12)
    a = ms.sample(cpu, 30, y=y, **kw)
    b = ms.sample(dev, 30, y=torch.from_numpy(y), **kw)
    assert a.settings["fused"] and isinstance(b.samples, torch.Tensor)
    assert float(np.abs(b.samples.numpy() - a.samples).max()) <= 1e-9 * np.abs(a.samples).max()


@pytest.mark.parametrize("labelled", [False, True])
@pytest.mark.parametrize("sampler,extra", [("naive", {"R": 3}), ("effective", {"kappa": 0.05})])
def test_posterior_samplers_on_the_device_equal_the_cpu_paths(sampler, extra, labelled):
    """naive (draws from the host streams, training rows gathered on the device) and effective
    (host covariance noise): the states stay tensors and equal the CPU runs."""
    X = rng(23).standard_normal((50, 3))
    labels = rng(24).integers(0, 2, 50)
    cpu = ms.EmpiricalScore(X, ms.VP(), labels=labels)
    dev = ms.EmpiricalScore(torch.from_numpy(X), ms.VP(), backend="array_api", labels=labels)
    y = np.arange(20) % 2 if labelled else None
    kw = dict(sampler=sampler, steps=30, seed=4, y=y, save_steps=[0, 10, 30], **extra)
    a = ms.sample(cpu, 20, **kw)
    b = ms.sample(dev, 20, **kw)
    assert isinstance(b.samples, torch.Tensor) and isinstance(b.saved, torch.Tensor)
    assert b.settings["device"] == "torch on cpu"
    tol = 1e-12 if sampler == "naive" else 1e-9  # naive: the same draws, means of the same rows
    assert float(np.abs(b.samples.numpy() - a.samples).max()) <= tol * np.abs(a.samples).max()
    np.testing.assert_allclose(b.saved.numpy(), a.saved, rtol=0, atol=tol * 10)


def test_torch_targets_of_a_device_model_never_leave_the_device(monkeypatch):
    """mixscore.torch with a model kept on a device: the batch goes to the backend as a tensor
    (no NumPy view), the targets, the DSM floor and the module's output are tensors on the
    batch's device and dtype, equal to the host model's."""
    import importlib

    import mixscore.torch as mt

    targets_module = importlib.import_module("mixscore.torch.targets")

    X = rng(25).standard_normal((90, 12)).astype(np.float32)
    host = ms.EmpiricalScore(X, ms.VP())
    dev = ms.EmpiricalScore(torch.from_numpy(X), ms.VP(), backend="array_api")
    x_t = torch.from_numpy(rng(26).standard_normal((6, 3, 2, 2)).astype(np.float32))
    t = torch.linspace(0.05, 0.9, 6)
    want = mt.targets(host, x_t, t)
    floors = {p: mt.dsm_floor(host, x_t, t, p, reduction="mean") for p in mt.PARAMETRIZATIONS}

    def no_host_copy(*_a, **_k):
        raise AssertionError("the batch of a device model went through NumPy")

    monkeypatch.setattr(targets_module, "to_numpy", no_host_copy)
    got = mt.targets(dev, x_t.requires_grad_(), t)
    for name in ("denoised", "score", "eps", "v"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.shape == x_t.shape and a.dtype == torch.float32 and not a.requires_grad
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-6, atol=2e-6 * b.abs().max())
    for p, f in floors.items():
        g = mt.dsm_floor(dev, x_t, t, p, reduction="mean")
        assert g.shape == (6,) and g.dtype == torch.float32
        np.testing.assert_allclose(g.numpy(), f.numpy(), rtol=1e-5)
    out = mt.as_module(dev, "x0")(x_t.double(), 0.3)
    assert out.dtype == torch.float64 and out.shape == x_t.shape
    with pytest.raises(ValueError, match=r"12 values per sample.*shape \(6, 5\)"):
        mt.targets(dev, torch.zeros(6, 5), 0.3)
    with pytest.raises(TypeError, match=r"x_t has dtype torch.float16"):
        mt.targets(dev, torch.zeros(6, 12, dtype=torch.float16), 0.3)
