"""pytest-benchmark cases for the samplers: python -m pytest bench --benchmark-only"""

import mixscore as ms
import numpy as np
import pytest


@pytest.fixture(scope="module")
def model():
    X = np.random.default_rng(0).standard_normal((1797, 64)).astype(np.float32)
    return ms.EmpiricalScore(X, ms.VP())


@pytest.mark.parametrize("sampler", ["euler_maruyama", "heun", "ddpm"])
@pytest.mark.parametrize("fused", [True, False])
def test_sample_100_steps(benchmark, model, sampler, fused):
    benchmark.pedantic(ms.sample, args=(model, 1000),
                       kwargs=dict(sampler=sampler, steps=100, fused=fused, progress=False),
                       rounds=2, iterations=1)
