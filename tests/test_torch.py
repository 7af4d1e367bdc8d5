"""mixscore.torch: exact targets and DSM floor against a dense float64 computation, gradients,
devices and dtypes, networks as scores step for step with the exact sampler, errors, the monitor
and the training example at reduced size."""

import importlib.util
import math
import warnings
from pathlib import Path

import mixscore as ms
import numpy as np
import pytest

torch = pytest.importorskip("torch")
mt = pytest.importorskip("mixscore.torch")
from mixscore.torch._convert import to_numpy  # noqa: E402

PARAMS = ["eps", "x0", "score", "v"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """torch's and the engine's OpenMP threads spin against each other on a small machine
    (alternating calls ran 30x slower on 2 cores); one torch thread keeps the tests quick."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def dense(X, x, t, sch):
    """Posterior weights and per-point targets at (x, t) by dense float64 softmax (SCIENCE.md
    section 1): the independent reference."""
    X, x = np.asarray(X, np.float64), np.asarray(x, np.float64)
    t = np.broadcast_to(np.asarray(t, np.float64), (x.shape[0],))
    a, s = sch.alpha(t)[:, None, None], sch.sigma(t)[:, None, None]
    diff = x[:, None, :] - a * X[None]
    logit = -(diff**2).sum(-1) / (2 * s[:, :, 0] ** 2)
    w = np.exp(logit - logit.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    eps_n = diff / s
    per_point = {
        "x0": np.broadcast_to(X[None], diff.shape),
        "eps": eps_n,
        "score": -diff / s**2,
        "v": a * eps_n - s * X[None],
    }
    return w, per_point


def data(n=40, d=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


# --- targets and the DSM floor ----------------------------------------------------------------


@pytest.mark.parametrize("tdtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_sample_t", [False, True])
def test_targets_match_dense_reference(tdtype, per_sample_t):
    X, sch = data(), ms.VP()
    model = ms.EmpiricalScore(X, sch)
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(16, 3, generator=g, dtype=torch.float64).to(tdtype)
    t = torch.linspace(0.05, 0.9, 16) if per_sample_t else 0.3
    tg = mt.targets(model, x_t, t)
    tn = t.numpy() if per_sample_t else t
    w, per = dense(X, x_t.double().numpy(), tn, sch)
    tol = 1e-5 if tdtype == torch.float32 else 1e-10
    names = {"x0": "denoised", "eps": "eps", "score": "score", "v": "v"}
    for p, field in names.items():
        got = getattr(tg, field)
        assert got.dtype == tdtype and got.device == x_t.device and got.shape == x_t.shape
        assert not got.requires_grad
        want = (w[:, :, None] * per[p]).sum(1)
        scale = np.abs(want).max()
        assert np.abs(got.double().numpy() - want).max() <= tol * scale, p


def test_targets_keep_the_sample_shape_and_read_without_copy():
    X = data(30, 4)
    model = ms.EmpiricalScore(X, ms.VE())
    x_t = torch.randn(5, 1, 2, 2, dtype=torch.float64)
    ref = model.denoise(x_t.reshape(5, 4).numpy(), 0.2)
    got = mt.targets(model, x_t, 0.2).denoised
    assert got.shape == (5, 1, 2, 2)
    np.testing.assert_allclose(got.reshape(5, 4).numpy(), ref, rtol=0, atol=1e-13)
    assert to_numpy(x_t, "x_t").ctypes.data == x_t.data_ptr()  # DLPack view, no copy


@pytest.mark.parametrize("p", PARAMS)
def test_dsm_floor_is_the_posterior_variance_of_the_target(p):
    X, sch = data(), ms.VP()
    model = ms.EmpiricalScore(X, sch)
    x_t = torch.randn(12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0.02, 0.8, 12, dtype=torch.float64)
    w, per = dense(X, x_t.numpy(), t.numpy(), sch)
    mean = (w[:, :, None] * per[p]).sum(1, keepdims=True)
    want = (w * ((per[p] - mean) ** 2).sum(-1)).sum(1)
    got = mt.dsm_floor(model, x_t, t, p)
    assert got.shape == (12,) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-8)
    np.testing.assert_allclose(
        mt.dsm_floor(model, x_t, t, p, reduction="mean").numpy(), want / 3, rtol=1e-8
    )


def test_gradients_flow_into_the_network_not_the_engine():
    X = data()
    model = ms.EmpiricalScore(X, ms.VP())
    net = torch.nn.Linear(3, 3)
    x_t = torch.randn(8, 3, requires_grad=True)
    tg = mt.targets(model, x_t, 0.4)
    assert tg.eps.grad_fn is None and not tg.eps.requires_grad
    loss = ((net(x_t) - tg.eps) ** 2).mean()
    loss.backward()
    assert net.weight.grad is not None and torch.count_nonzero(net.weight.grad) > 0
    # d loss / d x_t is the network's path only: the target is a constant
    x2 = x_t.detach().clone().requires_grad_(True)
    ((net(x2) - tg.eps.detach().clone()) ** 2).mean().backward()
    torch.testing.assert_close(x_t.grad, x2.grad, rtol=0, atol=0)


# --- networks as scores -----------------------------------------------------------------------


@pytest.mark.parametrize("p", PARAMS)
@pytest.mark.parametrize("sampler", ["ddpm", "heun"])
def test_exact_module_through_as_score_gives_the_exact_samples(p, sampler):
    X, sch = data(), ms.VP()
    model = ms.EmpiricalScore(X, sch)
    kw = dict(sampler=sampler, steps=40, seed=5)
    exact = ms.sample(model, 24, **kw).samples
    fn = mt.as_score(mt.as_module(model, p), p, schedule=sch, sample_shape=(3,), batch_size=7)
    got = ms.sample(fn, 24, **kw).samples
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-10 * np.abs(exact).max())


class KDiffusionDenoiser(torch.nn.Module):
    """The exact denoiser in the k-diffusion frame, D(x / alpha, sigma / alpha), returning the
    target of ``p`` in that frame (alpha = 1 there)."""

    def __init__(self, model, p):
        super().__init__()
        self.model, self.p = model, p

    def forward(self, x, s):
        sn = s.double().numpy()[:, None]
        d = self.model.stats_at_noise(x.double().numpy(), 1.0, sn[:, 0] ** 2).denoised
        xn = x.double().numpy()
        out = {
            "x0": d,
            "eps": (xn - d) / sn,
            "score": (d - xn) / sn**2,
            "v": (xn - d) / sn - sn * d,
        }[self.p]
        return torch.from_numpy(out).to(x.dtype)


@pytest.mark.parametrize("p", PARAMS)
def test_sigma_time_input_is_the_k_diffusion_frame(p):
    X, sch = data(), ms.VP()
    model = ms.EmpiricalScore(X, sch)
    kw = dict(sampler="ddpm", steps=40, seed=6)
    exact = ms.sample(model, 16, **kw).samples
    fn = mt.as_score(
        KDiffusionDenoiser(model, p),
        p,
        schedule=sch,
        time_input="sigma",
        dtype=torch.float64,
        sample_shape=3,
    )
    got = ms.sample(fn, 16, **kw).samples
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-9 * np.abs(exact).max())


def test_trained_network_matches_its_numpy_forward_and_any_batch_size():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(5):  # a few steps, so the weights are not the initial ones
        opt.zero_grad()
        net(torch.randn(16, 5)).square().mean().backward()
        opt.step()

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = net

        def forward(self, x, t):
            return self.body(torch.cat([x.reshape(-1, 4), t[:, None]], 1)).reshape(x.shape)

    W1, b1, W2, b2 = (p.detach().double().numpy() for p in net.parameters())

    def numpy_net(x, t):
        h = np.tanh(np.concatenate([x, np.full((x.shape[0], 1), 999 * t)], 1) @ W1.T + b1)
        return h @ W2.T + b2

    sch = ms.VP()
    kw = dict(sampler="ddpm", steps=30, seed=8)
    ref = ms.sample(numpy_net, 20, schedule=sch, dim=4, output="eps", **kw).samples
    for bs in (None, 3):
        fn = mt.as_score(
            Net().double(),
            "eps",
            schedule=sch,
            time_input=lambda t: 999 * t,
            sample_shape=(1, 2, 2),
            batch_size=bs,
        )
        got = ms.sample(fn, 20, **kw).samples
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


class Bad(torch.nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, t):
        if self.kind == "shape":
            return x[:, :1] * self.w
        if self.kind == "nan":
            return x * float("nan")
        return (x * self.w).to(torch.bfloat16)


@pytest.mark.parametrize(
    "kind, err, match",
    [
        ("shape", ValueError, r"output of Bad .* shape \(5, 1\) for an input of shape \(5, 2\)"),
        ("nan", ValueError, r"output of Bad .* NaN or Inf"),
        ("bf16", TypeError, r"output of Bad .* dtype torch\.bfloat16"),
    ],
)
def test_bad_network_outputs_are_named(kind, err, match):
    fn = mt.as_score(Bad(kind), "eps", schedule=ms.VP(), sample_shape=2)
    with pytest.raises(err, match=match):
        ms.sample(fn, 5, sampler="ddpm", steps=5)


def test_network_dtype_override_must_be_an_engine_dtype():
    fn = mt.as_score(lambda x, t: x, "x0", schedule=ms.VP(), sample_shape=2, dtype=torch.float32)
    assert ms.sample(fn, 3, sampler="ddpm", steps=3).samples.shape == (3, 2)
    with pytest.raises(TypeError, match=r"dtype must be torch.float32 or torch.float64"):
        mt.as_score(lambda x, t: x, "x0", schedule=ms.VP(), dtype=torch.bfloat16)


def test_bad_arguments():
    model = ms.EmpiricalScore(data(), ms.VP())
    with pytest.raises(TypeError, match=r"x_t has dtype torch.bfloat16"):
        mt.targets(model, torch.zeros(2, 3, dtype=torch.bfloat16), 0.5)
    with pytest.raises(ValueError, match=r"x_t is on meta.*GPU backend.*to_cpu=True"):
        mt.targets(model, torch.zeros(2, 3, device="meta"), 0.5)
    with pytest.raises(ValueError, match=r"3 values per sample.*shape \(2, 4\)"):
        mt.targets(model, torch.zeros(2, 4), 0.5)
    with pytest.raises(TypeError, match="x_t must be a torch.Tensor"):
        mt.targets(model, np.zeros((2, 3)), 0.5)
    with pytest.raises(ValueError, match=r"one time per sample \(2,\)"):
        mt.targets(model, torch.zeros(2, 3), torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match=r"t must lie in \(0, T\]"):
        mt.targets(model, torch.zeros(2, 3), 0.0)
    bounded = ms.EmpiricalScore(data(), ms.VP(), regularizer=ms.regularizers.Tikhonov(0.01))
    x = torch.from_numpy(data()[:2] + 0.1)  # t = 0 defined where the score is bounded
    assert torch.equal(mt.targets(bounded, x, 0.0).score,
                       torch.from_numpy(bounded.score(x.numpy(), 0.0)))
    with pytest.raises(ValueError, match=r"t must lie in \(0, T\]"):  # the floor's weights
        mt.dsm_floor(bounded, x, 0.0)
    with pytest.raises(ValueError, match="parametrization must be one of"):
        mt.as_score(torch.nn.Identity(), "noise", schedule=ms.VP())
    with pytest.raises(ValueError, match="reduction must be"):
        mt.dsm_floor(model, torch.zeros(2, 3), 0.5, reduction="max")
    with pytest.raises(TypeError, match="schedule must be a mixscore Schedule"):
        mt.as_score(torch.nn.Identity(), "eps", schedule=None)
    with pytest.raises(ValueError, match="time_input must be one of"):
        mt.as_score(torch.nn.Identity(), "eps", schedule=ms.VP(), time_input="sigma2")


# --- the monitor and the example --------------------------------------------------------------


def test_monitor_network_and_exact_reference_agree_and_mode_is_restored():
    X = data(30, 2)
    model = ms.EmpiricalScore(X, ms.VP())
    kw = dict(n=40, steps=40, seed=3, n_boot=50)
    ref = mt.memorization_monitor(model, X, **kw)
    net = mt.as_module(model, "x0").train()
    got = mt.memorization_monitor(net, X, schedule=ms.VP(), parametrization="x0", **kw)
    assert net.training
    np.testing.assert_allclose(got.samples, ref.samples, rtol=0, atol=1e-10)
    direct = ms.memorization(ref.samples, X, n_boot=50)
    assert ref.fraction == direct.fraction_ratio == got.fraction
    assert ref.settings["seed"] == 3 and ref.settings["steps"] == 40


def test_monitor_takes_image_shaped_and_grad_requiring_training_tensors():
    X = ms.datasets.digits()[:120]
    net = mt.as_module(ms.EmpiricalScore(X, ms.VP()), "eps")
    kw = dict(schedule=ms.VP(), n=12, steps=20, seed=1)
    want = mt.memorization_monitor(net, X, **kw)
    for train in (torch.from_numpy(X).reshape(-1, 1, 8, 8),  # (N, C, H, W): 64 values a point
                  torch.from_numpy(X).requires_grad_()):
        got = mt.memorization_monitor(net, train, **kw)
        np.testing.assert_array_equal(got.samples, want.samples)
        assert got.fraction == want.fraction == 1.0


def test_grad_requiring_start_and_one_sample_batches_are_quiet():
    """A CPU start tensor that requires grad reads as its values; a network batch of one sample
    gives no read-only-array warning."""
    X = data(30, 2)
    model = ms.EmpiricalScore(X, ms.VP())
    kw = dict(steps=5, sampler="ddim", seed=1)
    got = ms.sample(model, 3, start=torch.from_numpy(X[:3]).requires_grad_(), **kw)
    np.testing.assert_array_equal(got.samples, ms.sample(model, 3, start=X[:3], **kw).samples)
    score = mt.as_score(mt.as_module(model, "eps"), "eps", schedule=ms.VP(), batch_size=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        ms.sample(score, 6, dim=2, **kw)  # batches of 5 and 1


def test_monitor_warns_on_samples_far_from_the_data():
    """An untrained or diverging network's samples on another scale than train: a warning and
    a reading of 0 memorized (not the units error, which would stop a training loop), unless
    check_scale=True asks for the error."""
    X = data(30, 2)

    def far(x, t):  # eps = 1e3 x: samples of size 1e3 and more
        return 1e3 * x

    kw = dict(schedule=ms.VP(), parametrization="eps", n=20, steps=10)
    with pytest.warns(RuntimeWarning, match=r"samples span .*\(untrained or diverging\?\)"):
        got = mt.memorization_monitor(far, X, **kw)
    assert got.fraction == 0.0 and got.report.inputs["check_scale"] is False
    with pytest.raises(ValueError, match="samples span"):
        mt.memorization_monitor(far, X, check_scale=True, **kw)


def test_train_digits_example_quick(tmp_path):
    path = Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"
    spec = importlib.util.spec_from_file_location("train_digits", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    threads = torch.get_num_threads()
    try:
        res = example.main(["--quick", "--exact-targets", "--out", str(tmp_path), "--no-plot"])
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "results.json").exists()
    mem = res["memorized"]
    assert len(mem) == len(res["step"]) >= 3
    assert mem[0] == 0.0 < mem[-1]  # an untrained network copies nothing; training memorizes
    assert res["exact_memorized"] > mem[-1]  # the exact score is the limit it approaches
    assert res["dsm_loss"][-1] < res["dsm_loss"][0]
    assert all(loss > res["floor"] for loss in res["dsm_loss"])  # no network beats the floor
    assert math.isfinite(res["floor"]) and res["floor"] > 0
