import mixscore as ms
import numpy as np
import pytest

BACKENDS = ms.available_backends()


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def sigma_schedule():
    """A schedule whose time is sigma itself (alpha = 1), to test at exact noise levels."""
    return ms.EDM(sigma_min=1e-9, sigma_max=1e9)


def reference(train, schedule, weights=None):
    """The float64 NumPy oracle, on the same (possibly float32) inputs."""
    return ms.EmpiricalScore(np.asarray(train, np.float64), schedule, weights, backend="numpy")


def rng(seed=0):
    return np.random.default_rng(seed)
