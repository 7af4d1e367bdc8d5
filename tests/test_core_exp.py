import mixscore as ms
import numpy as np
import pytest

pytestmark = pytest.mark.skipif("cpu" not in ms.available_backends(), reason="no C++ engine")


def test_engine_exp_accuracy():
    from mixscore.backends.cpu import _core

    x = np.concatenate([-np.geomspace(1e-300, 700, 100000), [0.0, -0.5, -1.0]])
    rel = np.abs(_core.exp_nonpositive(x) / np.exp(x) - 1)
    assert rel.max() < 4e-16
