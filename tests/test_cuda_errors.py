"""backend="cuda" where it cannot run says exactly what is missing: the extension (no CUDA
compiler at install time), a visible device, or CuPy to move NumPy data to the GPU."""

import sys
import types

import mixscore
import mixscore as ms
import numpy as np
import pytest
from mixscore.backends import cuda

X = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)


def fake_extension(monkeypatch, module):
    """Make ``from mixscore import _cuda`` give ``module`` (None: an ImportError)."""
    monkeypatch.delattr(mixscore, "_cuda", raising=False)
    monkeypatch.setitem(sys.modules, "mixscore._cuda", module)


def test_not_built(monkeypatch):
    fake_extension(monkeypatch, None)
    with pytest.raises(
        RuntimeError,
        match="mixscore._cuda extension was not built: no CUDA "
        "compiler \\(nvcc\\) was found when mixscore was installed",
    ):
        ms.EmpiricalScore(X, ms.VP(), backend="cuda")


def test_no_device(monkeypatch):
    fake_extension(monkeypatch, types.SimpleNamespace(device_count=lambda: 0))
    with pytest.raises(RuntimeError, match="no CUDA device is visible"):
        ms.EmpiricalScore(X, ms.VP(), backend="cuda")


def test_numpy_data_without_cupy(monkeypatch):
    fake_extension(monkeypatch, types.SimpleNamespace(device_count=lambda: 1))
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        ms.EmpiricalScore(X, ms.VP(), backend="cuda")


def test_this_machine_says_what_is_missing():
    """Unfaked: whichever of the reasons holds here is the one given."""
    problem = cuda.cuda_problem()
    if problem is None:
        pytest.skip("a CUDA device is visible here: backend='cuda' runs (tests/test_gpu.py)")
    with pytest.raises(RuntimeError, match="backend='cuda' is not available: ") as err:
        ms.EmpiricalScore(X, ms.VP(), backend="cuda")
    assert problem in str(err.value) and "backend='cupy'" in str(err.value)


def test_products_is_a_cuda_option():
    with pytest.raises(ValueError, match="products applies to the 'cuda' backend, not to 'cpu'"):
        ms.EmpiricalScore(X, ms.VP(), products="float64")


def test_products_values_are_checked(monkeypatch):
    fake_extension(monkeypatch, types.SimpleNamespace(device_count=lambda: 1))
    with pytest.raises(ValueError, match="products must be one of 'auto', 'float32'"):
        ms.EmpiricalScore(X, ms.VP(), backend="cuda", products="tf32")
