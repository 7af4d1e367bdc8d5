"""Long calls release the GIL and stop cleanly on Ctrl-C."""

import os
import signal
import threading
import time

import mixscore as ms
import numpy as np
import pytest

pytestmark = pytest.mark.skipif("cpu" not in ms.available_backends(), reason="no C++ engine")


def _big_model():
    r = np.random.default_rng(0)
    return (ms.EmpiricalScore(r.standard_normal((20000, 64)).astype(np.float32), ms.VP()),
            r.standard_normal((40000, 64)).astype(np.float32))


def ctrl_c_stops(call, after=0.3, within=2.0):
    """``call`` (seconds long in full) raises KeyboardInterrupt within ``within`` s of Ctrl-C."""
    timer = threading.Timer(after, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        call()
    assert time.perf_counter() - start < within


def ticks_during(call) -> int:
    """How often a Python thread ran while ``call`` was busy (many: the GIL was released)."""
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    th = threading.Thread(target=count)
    th.start()
    try:
        call()
    finally:
        stop.set()
        th.join()
    return len(ticks)


def test_ctrl_c_raises_keyboard_interrupt():
    model, x = _big_model()
    ctrl_c_stops(lambda: model.score(x, 0.5))
    # the model still works afterwards
    assert np.all(np.isfinite(model.score(x[:10], 0.5)))


def test_gil_released_during_call():
    model, x = _big_model()
    assert ticks_during(lambda: model.score(x[:8000], 0.5)) > 20


def test_ctrl_c_stops_the_fused_sampler():
    r = np.random.default_rng(1)
    model = ms.EmpiricalScore(r.standard_normal((4000, 32)).astype(np.float32), ms.VP())
    ctrl_c_stops(lambda: ms.sample(model, 4000, steps=2000, progress=False))
    res = ms.sample(model, 3, steps=5, sampler="ddim", progress=False)
    assert np.all(np.isfinite(res.samples))


def test_nearest_ctrl_c_and_gil():
    g = np.random.default_rng(10)
    index = ms.NearestIndex(g.standard_normal((50000, 128), dtype=np.float32))
    Q = g.standard_normal((20000, 128), dtype=np.float32)
    ctrl_c_stops(lambda: index.search(Q, 2))
    assert ticks_during(lambda: index.search(Q[:3000], 2)) > 20


def test_ctrl_c_one_query_tile():
    """A call with a single query tile (M <= 128) runs on one thread, whichever takes it; the
    calling thread polls while it waits, so Ctrl-C ends the call within 0.5 s (the full call
    takes seconds) on any thread count (issue 17, item 6)."""
    g = np.random.default_rng(2)
    X = g.random((4_000_000, 16), dtype=np.float32)
    x = X[:128] + np.float32(0.5)
    for threads in (1, 2):
        model = ms.EmpiricalScore(X, ms.EDM(), num_threads=threads)
        ctrl_c_stops(lambda m=model: m.stats_at_noise(x, 1.0, 100.0), after=0.3, within=0.8)


def test_ctrl_c_stops_the_fused_naive_sampler():
    r = np.random.default_rng(2)
    model = ms.EmpiricalScore(r.standard_normal((4000, 32)).astype(np.float32), ms.VP())
    ctrl_c_stops(lambda: ms.sample(model, 4000, steps=2000, sampler="naive", R=4, progress=False))
    res = ms.sample(model, 3, steps=5, sampler="naive", R=2, progress=False)
    assert res.settings["fused"] and np.all(np.isfinite(res.samples))
