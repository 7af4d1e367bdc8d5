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


def test_ctrl_c_raises_keyboard_interrupt():
    model, x = _big_model()
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        model.score(x, 0.5)
    assert time.perf_counter() - start < 2.0  # the full call takes several seconds
    # the model still works afterwards
    assert np.all(np.isfinite(model.score(x[:10], 0.5)))


def test_gil_released_during_call():
    model, x = _big_model()
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    th = threading.Thread(target=count)
    th.start()
    try:
        model.score(x[:8000], 0.5)
    finally:
        stop.set()
        th.join()
    assert len(ticks) > 20


def test_ctrl_c_stops_the_fused_sampler():
    r = np.random.default_rng(1)
    model = ms.EmpiricalScore(r.standard_normal((4000, 32)).astype(np.float32), ms.VP())
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        ms.sample(model, 4000, steps=2000, progress=False)  # tens of seconds in full
    assert time.perf_counter() - start < 2.0
    res = ms.sample(model, 3, steps=5, sampler="ddim", progress=False)
    assert np.all(np.isfinite(res.samples))
