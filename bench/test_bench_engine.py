"""pytest-benchmark cases: python -m pytest bench --benchmark-only"""

import mixscore as ms
import numpy as np
import pytest


@pytest.fixture(scope="module", params=[2, 64, 784])
def setup(request):
    d = request.param
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, d)).astype(np.float32)
    x = rng.standard_normal((1024, d)).astype(np.float32)
    return ms.EmpiricalScore(X, ms.VP()), ms.EmpiricalScore(X, ms.VP(), backend="numpy"), x


@pytest.mark.parametrize("t", [0.01, 0.5])
def test_cpu_stats(benchmark, setup, t):
    model, _, x = setup
    benchmark(model.stats, x, t)


def test_numpy_reference_stats(benchmark, setup):
    _, ref, x = setup
    benchmark.pedantic(ref.stats, args=(x[:64], 0.5), rounds=1, iterations=1)
