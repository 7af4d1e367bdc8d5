"""pytest-benchmark cases for exact nearest neighbours: python -m pytest bench --benchmark-only

ms.NearestIndex.search against FAISS IndexFlatL2 and scikit-learn's brute-force search on the
same data (each skipped when its library is not installed)."""

import mixscore as ms
import numpy as np
import pytest

K = 2


@pytest.fixture(scope="module", params=[64, 784])
def data(request):
    d = request.param
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, d), dtype=np.float32)
    Q = rng.standard_normal((1024, d), dtype=np.float32)
    return X, Q


def test_mixscore_nearest(benchmark, data):
    X, Q = data
    index = ms.NearestIndex(X)
    benchmark(index.search, Q, K)


def test_mixscore_nearest_with_build(benchmark, data):
    X, Q = data
    benchmark(ms.nearest, Q, X, K)


def test_faiss_flat_l2(benchmark, data):
    faiss = pytest.importorskip("faiss")
    X, Q = data
    index = faiss.IndexFlatL2(X.shape[1])
    index.add(X)
    benchmark(index.search, Q, K)


def test_sklearn_brute(benchmark, data):
    neighbors = pytest.importorskip("sklearn.neighbors")
    X, Q = data
    nn = neighbors.NearestNeighbors(n_neighbors=K, algorithm="brute").fit(X)
    benchmark.pedantic(nn.kneighbors, args=(Q,), rounds=2, iterations=1)
