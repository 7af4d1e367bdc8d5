"""Bundled and toy data sets, and loading user files."""

import mixscore as ms
import numpy as np
import pytest
from mixscore import datasets


def test_digits_bundled_and_scaled():
    x, y = datasets.digits(labels=True)
    assert x.shape == (1797, 64) and y.shape == (1797,)
    assert x.min() == -1.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    raw = datasets.digits(value_range=None)
    assert raw.min() == 0 and raw.max() == 16
    np.testing.assert_array_equal(x, raw / 8 - 1)
    np.testing.assert_allclose(datasets.digits((0, 1)), raw / 16)
    assert datasets.digits(dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="value_range"):
        datasets.digits((1, 0))


def test_toy_sets():
    np.testing.assert_array_equal(datasets.two_points(), [[-1.0], [1.0]])
    np.random.seed(1)  # noqa: NPY002  (the paper's legacy global seed)
    np.testing.assert_array_equal(datasets.gaussian_points(),
                                  np.random.randn(20, 2))  # noqa: NPY002
    c = datasets.circle(9)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0)
    assert np.allclose(np.diff(np.sort(np.arctan2(c[:, 1], c[:, 0]))), 2 * np.pi / 9)
    assert datasets.hexagon().shape == (6, 2)
    ln = datasets.line(50)
    assert ln.shape == (50, 2) and np.all(ln[:, 1] == 0)
    sp = datasets.spiral(100, turns=2)
    np.testing.assert_allclose(np.linalg.norm(sp, axis=1), np.arange(1, 101) / 100)
    assert datasets.five_points().shape == (5, 2)


def test_get_and_load(tmp_path):
    assert datasets.get("hexagon").shape == (6, 2)
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        datasets.get("mnist")
    x = np.arange(12.0).reshape(3, 2, 2)
    np.save(tmp_path / "a.npy", x)
    np.testing.assert_array_equal(datasets.load(tmp_path / "a.npy"), x.reshape(3, 4))
    np.savez(tmp_path / "b.npz", train=x[:, 0], other=x)
    np.testing.assert_array_equal(datasets.get(str(tmp_path / "b.npz")), x[:, 0])
    np.savez(tmp_path / "c.npz", u=x, v=x)
    with pytest.raises(ValueError, match=r"say which with key= \(or as .*c.npz:KEY\)"):
        datasets.get(str(tmp_path / "c.npz"))
    np.testing.assert_array_equal(datasets.get(f"{tmp_path / 'c.npz'}:v"), x.reshape(3, 4))
    with pytest.raises(FileNotFoundError, match="no such file"):
        datasets.load(tmp_path / "missing.npy")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="cannot read"):
        datasets.load(tmp_path / "bad.npy")
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        datasets.load(tmp_path / "nan.npy")


def test_info_reports_the_engine():
    d = ms.info()
    assert d["mixscore"] == ms.__version__
    assert "cpu" in d["backends"] and d["engine_isa"] in ("avx512", "avx2", "generic")
    assert d["threads"] >= 1
    text = ms.system.format_info(d)
    assert "engine instruction set" in text
