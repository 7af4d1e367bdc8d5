"""The benchmark helpers that measure the machine's limits (bench/compare.py): they run and
return sane numbers; no timing assertions (the machine is shared)."""

import math

import mixscore as ms
import pytest

pytestmark = pytest.mark.skipif("cpu" not in ms.available_backends(), reason="no C++ engine")


@pytest.fixture
def core():
    from mixscore.backends.cpu import _core

    return _core


@pytest.mark.parametrize("threads", [0, 1])
def test_fma_peak_positive(core, threads):
    g = core.fma_peak_gflops(threads=threads, seconds=0.02)
    assert math.isfinite(g) and g > 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [0, 1])
def test_exp_throughput_positive(core, dtype, threads):
    r = core.exp_throughput(dtype, threads=threads, seconds=0.02)
    assert math.isfinite(r) and r > 0


def test_bad_arguments(core):
    with pytest.raises(ValueError, match="dtype"):
        core.exp_throughput("float16")
    with pytest.raises(ValueError, match="threads"):
        core.fma_peak_gflops(threads=-1)
    with pytest.raises(ValueError, match="seconds"):
        core.exp_throughput("float32", seconds=0.0)
