"""The CUDA kernels (cuda/) compiled as C++ and run on the CPU, so their logic is tested where
no GPU is (every CI run): tests/cuda_host/cuda_runtime.h stands in for the CUDA runtime (a
block's threads are fibers that meet at barriers; blocks run one after another), and the
whole ``mixscore._cuda`` module built against it drives the ``cuda`` backend on CPU torch
tensors. The GPU tests of tests/test_gpu.py and tests/test_device_sampler.py then run
unchanged (at their sizes or smaller), also with the threads of each barrier phase run in
reverse and shuffled order, where a missing barrier or a race on shared memory changes the
result. The tensor-core kernels run through a stand-in of their WMMA fragments (every thread
holds its warp's whole fragment) when the stand-in reports compute capability 9. What this
cannot check: speed, coalescing, register limits, warp-level timing, and the real tensor
cores' rounding.

tests/cuda_host/tile_check.cpp checks the GEMM tile alone against in-order FMAs, bit for bit."""

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import mixscore as ms
import numpy as np
import pytest
from conftest import reference, rng, sigma_schedule
from test_accuracy import make_data

ROOT = Path(__file__).resolve().parents[1]
HOST = ROOT / "tests" / "cuda_host"
CUDA_SOURCES = ["posterior.cu", "nearest.cu", "noise.cu", "peak.cu", "sampler.cu", "draws.cu",
                "cov_noise.cu"]
CXX = shutil.which("g++") or shutil.which("clang++")
needs_cxx = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) on PATH")


def _compile(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([CXX, "-std=c++17", "-O1", "-fPIC", "-ffp-contract=off", "-w",
                             "-DMIXSCORE_WMMA_SHIM",
                             "-I", str(HOST), "-I", str(ROOT / "cuda"),
                             "-I", str(ROOT / "cpp" / "include"), "-I", str(ROOT / "cpp" / "src"),
                             *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def host_cuda(tmp_path_factory):
    """``mixscore._cuda`` built against the CPU stand-in of the runtime (about 10 s)."""
    if CXX is None:
        pytest.skip("no C++ compiler (g++ or clang++) on PATH")
    pybind11 = pytest.importorskip("pybind11")
    out = tmp_path_factory.mktemp("cuda_host")
    jobs = [_compile(["-x", "c++", "-c", str(ROOT / "cuda" / f), "-o", str(out / f"{f}.o")])
            for f in CUDA_SOURCES]
    jobs.append(_compile(["-I", pybind11.get_include(), "-I", sysconfig.get_paths()["include"],
                          "-c", str(ROOT / "cuda" / "bindings.cpp"),
                          "-o", str(out / "bindings.o")]))
    for job in jobs:
        log, _ = job.communicate()
        assert job.returncode == 0, log
    lib = out / ("_cuda" + sysconfig.get_config_var("EXT_SUFFIX"))
    objs = [str(p) for p in out.glob("*.o")]
    link = subprocess.run([CXX, "-shared", "-o", str(lib), *objs], capture_output=True,
                          text=True)
    assert link.returncode == 0, link.stderr
    # another full name: CPython would hand back an already imported mixscore._cuda
    spec = importlib.util.spec_from_file_location("mixscore_cuda_host._cuda", lib)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def emulated(host_cuda, monkeypatch):
    """The cuda backend on CPU torch tensors through the host-built kernels; test_gpu's and
    test_device_sampler's GPU library is CPU torch."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("array_api_compat")
    import test_device_sampler
    import test_gpu
    from mixscore.backends import cuda

    monkeypatch.setitem(sys.modules, "mixscore._cuda", host_cuda)
    monkeypatch.setattr(ms, "_cuda", host_cuda, raising=False)
    monkeypatch.setattr(cuda, "_on_gpu", lambda a: a)  # CPU tensors are the device arrays
    monkeypatch.setattr(cuda, "_stream", lambda a: 0)
    lib = (torch, lambda a: torch.from_numpy(np.ascontiguousarray(a)), lambda v: v.numpy())
    for module in (test_gpu, test_device_sampler):
        monkeypatch.setattr(module, "LIB", lib)
    monkeypatch.setattr(test_gpu, "EXT", host_cuda)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield test_gpu
    torch.set_num_threads(before)


@needs_cxx
def test_gemm_tile_equals_in_order_fmas(tmp_path):
    exe = tmp_path / "tile_check"
    build = subprocess.run(
        [CXX, "-std=c++20", "-O1", "-pthread", "-ffp-contract=off", "-w",
         "-I", str(ROOT / "cuda"), str(HOST / "tile_check.cpp"), "-o", str(exe)],
        capture_output=True, text=True)
    if build.returncode != 0 and "barrier" in build.stderr:
        pytest.skip(f"{CXX} lacks C++20 <barrier>: {build.stderr[:200]}")
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout + run.stderr


@pytest.mark.parametrize("d,n", [(1, 7), (2, 1000), (3, 2), (7, 500), (16, 300), (17, 500),
                                 (64, 800), (784, 300)])
def test_accuracy_matrix(emulated, d, n):
    """Every path (direct kernels for D <= 16, the tiled pass above) against the float64
    reference and the CPU engine: pixels and normal data, sigma 1e-4 to 1e4 x scale."""
    emulated.test_core_accuracy_matrix_on_the_gpu("cuda", n, d)


def test_weights_times_nearest_noise(emulated):
    emulated.test_weights_time_per_query_and_argmax("cuda")
    emulated.test_nearest_matches_the_cpu_engine_bit_for_bit()
    emulated.test_philox_noise_equals_the_cpu_stream()


@pytest.mark.parametrize("d", [2, 64])
def test_chunking_gives_the_same_bits(emulated, monkeypatch, d):
    emulated.test_cuda_results_do_not_depend_on_the_query_chunking(monkeypatch, d)


def _check(model_kw, X, factors=(1e-4, 1e-2, 1.0, 1e2, 1e4), seed=0):
    from test_accuracy import check_against_reference
    from test_gpu import OnDevice

    sde = sigma_schedule()
    model, ref = OnDevice(X, sde, "cuda", **model_kw), reference(X, sde)
    for f in factors:
        check_against_reference(model, ref, X, f * float(X.std()), seed=seed)
    return model


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("refine", ["auto", "all"])
def test_float64_data_and_refine_all(emulated, dtype, refine):
    _check({"refine": refine}, make_data("pixels", 600, 200, seed=11).astype(dtype), seed=11)


def test_products_and_the_slow_band(emulated):
    """Both SIMT products meet the core accuracy; off-centre spread posteriors take the
    float64 product under "auto" (the float32 bound over the cap for every entry)."""
    for products in ("float32", "float64"):
        for kind in ("pixels", "normal"):
            _check({"products": products}, make_data(kind, 500, 300, seed=3), seed=3)
    X = make_data("normal", 500, 784, seed=12) + np.float32(30.0)
    sde = sigma_schedule()
    from test_accuracy import check_against_reference
    from test_gpu import OnDevice

    model, ref = OnDevice(X, sde, "cuda"), reference(X, sde)
    backend, calls = model.model.backend, []
    wide = backend._wide
    backend._wide = lambda *a: calls.append(wide(*a)) or calls[-1]
    check_against_reference(model, ref, X, 5.0 * float(X.std()), seed=12)
    assert any(calls)
    with pytest.raises(ValueError, match="3xTF32 products need .* compute capability >= 8"):
        _check({"products": "3xtf32"}, make_data("normal", 200, 64, seed=4))


@pytest.mark.parametrize("products", ["float64", "3xtf32"])
def test_tensor_core_products(emulated, monkeypatch, products):
    """Compute capability 9: the float64 (DMMA 8x8x4) and split-TF32 (16x16x8) logits
    kernels through the WMMA stand-in (tests/cuda_host/mma_stand_in.h) meet the core
    accuracy, float64 data included (its logits take the float64 tensor-core product)."""
    monkeypatch.setenv("MIXSCORE_HOST_CC", "9")
    factors = (1e-4, 1e-2, 1.0, 3.0, 10.0, 30.0, 1e2, 1e4)  # 3 .. 30: spread, unrefined logits
    for kind, d in (("pixels", 200), ("normal", 96)):
        _check({"products": products}, make_data(kind, 300, d, seed=d), factors, seed=d)
    if products == "float64":
        _check({}, make_data("pixels", 300, 40, seed=5).astype(np.float64), seed=5)


def test_labels_regularizers_and_sampling(emulated):
    """Conditional, regularized statistics and the device sampler (Philox noise drawn by the
    noise kernel) on the cuda backend against the CPU."""
    import torch
    from mixscore import _core
    from mixscore.backends import cuda
    from mixscore.regularizers import EmpiricalBayes, Tikhonov

    r = rng(5)
    X = r.standard_normal((400, 24))
    labels = r.integers(0, 3, 400)
    kw = dict(labels=labels, regularizer=[Tikhonov(0.01), EmpiricalBayes(1.0)])
    dev = ms.EmpiricalScore(torch.from_numpy(X), ms.VP(), backend="cuda", **kw)
    ref = ms.EmpiricalScore(X, ms.VP(), backend="numpy", **kw)
    x, y = r.standard_normal((30, 24)), r.integers(0, 3, 30)
    got = dev.stats(torch.from_numpy(x), 0.3, ("score", "logpdf", "argmax"), y=y)
    want = ref.stats(x, 0.3, ("score", "logpdf", "argmax"), y=y)
    for name in ("score", "logpdf", "argmax"):
        np.testing.assert_allclose(getattr(got, name).numpy(), getattr(want, name),
                                   rtol=1e-10, atol=1e-10)
    cpu = ms.EmpiricalScore(X, ms.VP(), **kw)
    ys = np.arange(16) % 3
    for sampler in ("ddpm", "heun"):
        a = ms.sample(cpu, 16, sampler=sampler, steps=12, seed=2, y=ys, start="prior")
        b = ms.sample(dev, 16, sampler=sampler, steps=12, seed=2, y=ys, start="prior")
        assert isinstance(b.samples, torch.Tensor)
        assert np.abs(b.samples.numpy() - a.samples).max() <= 1e-9 * np.abs(a.samples).max()
    ids = np.array([0, 5, 2**40], dtype=np.int64)
    np.testing.assert_array_equal(cuda.philox_normals(9, torch.from_numpy(ids), 17, 5).numpy(),
                                  _core.philox_normals(9, ids, 17, 5))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_posterior_draws_and_noise(emulated, dtype):
    """The draws kernel against the reference's jumps and streams, by label, many draws; the
    covariance-noise kernel against the reference's noise."""
    emulated.test_draws_on_the_gpu_are_the_reference_draws(
        dtype, cases=((2, 600), (20, 500), (40, 300)), ts=(0.01, 0.3))
    if dtype == np.float64:
        emulated.test_draws_on_the_gpu_follow_the_weights_labels_and_many_draws()
    emulated.test_cov_noise_on_the_gpu_is_the_reference_noise(
        dtype, cases=((2, 400), (24, 300)), ts=(0.01, 0.5))
    emulated.test_a_nan_state_gives_no_index_past_the_training_set()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_gpu_sampler_loop(emulated, dtype):
    """The GPU loop (cuda/sampler.cu) against the C++ loop and the device loop: every
    fixed-grid sampler, saved steps, the denoised end, batches."""
    import test_device_sampler as t

    t.test_cuda_fused_loop_equals_the_cpu_loop_and_the_device_loop(dtype, n=12, steps=12, d=5)
    t.test_cuda_fused_steps_are_the_cpu_steps_bit_for_bit(dtype)


def test_fused_gpu_sampler_loop_regularizers_labels(emulated):
    import test_device_sampler as t

    t.test_cuda_fused_loop_regularizers_and_labels(samplers=("heun",), n=9, steps=8)
    t.test_cuda_posterior_samplers_equal_the_cpu_paths("naive", {"R": 3}, n=6, steps=6)
    t.test_cuda_posterior_samplers_equal_the_cpu_paths("effective", {"kappa": 0.05}, n=6,
                                                       steps=6)


def test_fused_gpu_sampler_loop_stops_reports_refuses(emulated):
    import test_device_sampler as t

    t.test_cuda_fused_loop_stops_reports_and_refuses_like_the_cpu_loop()


def test_fused_gpu_sampler_loop_query_chunks(emulated, monkeypatch):
    import test_device_sampler as t

    t.test_cuda_fused_loop_does_not_depend_on_query_chunks(monkeypatch, n=130, sampler="ddpm",
                                                           steps=2)


def test_fused_gpu_sampler_loop_stops_on_ctrl_c(emulated):
    """The GPU loop polls for Ctrl-C between steps with the GIL released."""
    import test_device_sampler as t
    from test_interrupt import ctrl_c_stops

    _, dev = t._cuda_pair(t.data(n=200, d=4))
    ctrl_c_stops(lambda: ms.sample(dev, 40, sampler="ddpm", steps=20000))


@pytest.mark.parametrize("order", ["reverse", "shuffle"])
def test_thread_order_does_not_matter(emulated, monkeypatch, order):
    """The same checks with each barrier phase's threads run in another order: a missing
    barrier or a race on shared memory would change the results."""
    monkeypatch.setenv("MIXSCORE_HOST_ORDER", order)
    assert os.environ["MIXSCORE_HOST_ORDER"] == order
    emulated.test_core_accuracy_matrix_on_the_gpu("cuda", 300, 16)
    emulated.test_core_accuracy_matrix_on_the_gpu("cuda", 400, 96)
    emulated.test_cuda_results_do_not_depend_on_the_query_chunking(monkeypatch, 64)
    emulated.test_nearest_matches_the_cpu_engine_bit_for_bit()
    import test_device_sampler as t

    t.test_cuda_fused_loop_equals_the_cpu_loop_and_the_device_loop(
        np.float32, samplers=("heun",), n=12, steps=8, d=5)
    emulated.test_draws_on_the_gpu_are_the_reference_draws(np.float64, cases=((20, 300),),
                                                          ts=(0.3,))
    emulated.test_cov_noise_on_the_gpu_is_the_reference_noise(np.float64, cases=((20, 300),),
                                                             ts=(0.3,))
