"""The benchmark helpers that measure the machine's limits (bench/compare.py, module
mixscore._bench outside the public extension): they run and return sane numbers for every
instruction set this CPU supports; no timing assertions (the machine is shared)."""

import math

import mixscore as ms
import pytest

pytestmark = pytest.mark.skipif("cpu" not in ms.available_backends(), reason="no C++ engine")


@pytest.fixture
def core():
    from mixscore import _bench

    return _bench


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


def test_each_instruction_set_and_bad_isa(core):
    from mixscore import _core

    best = _core.isa()
    try:
        for isa in ("generic", "avx2", "avx512"):
            if _core.set_isa(isa):  # supported by this CPU: the helpers measure it too
                assert core.fma_peak_gflops(threads=1, seconds=0.01, isa=isa) > 0
                assert core.exp_throughput("float64", threads=1, seconds=0.01, isa=isa) > 0
    finally:
        _core.set_isa(best)
    with pytest.raises(ValueError, match="isa"):
        core.fma_peak_gflops(isa="sse9")


def test_not_in_the_public_extension():
    from mixscore import _core

    assert not hasattr(_core, "fma_peak_gflops") and not hasattr(_core, "exp_throughput")
