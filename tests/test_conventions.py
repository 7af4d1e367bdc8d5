"""Small API conventions (issue 11): one stat by name, one-line reprs, the data-scale warning
of EmpiricalScore, the py.typed marker."""

import warnings
from pathlib import Path

import mixscore as ms
import numpy as np
import pytest


def test_stats_include_accepts_one_name(backend):
    X = np.random.default_rng(0).standard_normal((30, 3))
    model = ms.EmpiricalScore(X, ms.VP(), backend=backend)
    x = X[:4] + 0.1
    one = model.stats(x, 0.3, include="logpdf")
    assert one.denoised is None
    np.testing.assert_array_equal(one.logpdf, model.stats(x, 0.3, include=["logpdf"]).logpdf)
    with pytest.raises(ValueError, match=r"unknown statistics \['logpfd'\]"):
        model.stats(x, 0.3, include="logpfd")


def test_score_stats_repr_shows_shapes_not_values():
    X = np.random.default_rng(1).standard_normal((200, 16))
    st = ms.EmpiricalScore(X, ms.VP()).stats(X[:50], 0.2)
    text = repr(st)
    assert "\n" not in text and len(text) < 400
    assert "denoised=<float64 array (50, 16)>" in text and "argmax=<int64 array (50,)>" in text
    one = repr(ms.EmpiricalScore(X, ms.VP()).stats(X[0], 0.2, include=("logpdf", "argmax")))
    assert f"logpdf={float(st.logpdf[0])!r}" in one and "argmax=0" in one


@pytest.mark.parametrize(
    "schedule, value_range, warns",
    [
        (ms.VP(), (0.0, 255.0), True),
        (ms.Cosine(), (0.0, 255.0), True),
        (ms.OU(), (0.0, 255.0), True),
        (ms.VP(), (-1.0, 1.0), False),
        (ms.VE(sigma_max=50.0), (0.0, 255.0), True),  # the prior N(0, 50^2) misses 0..255 data
        (ms.VE(sigma_max=2000.0), (0.0, 255.0), False),
        (ms.EDM(sigma_max=2000.0), (0.0, 255.0), False),
    ],
)
def test_warns_when_the_data_scale_does_not_fit_the_schedule(schedule, value_range, warns):
    X = ms.datasets.digits(value_range=value_range)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ms.EmpiricalScore(X, schedule)
    msgs = [str(m.message) for m in w if issubclass(m.category, RuntimeWarning)]
    assert bool(msgs) == warns, msgs
    if warns:
        rms = float(np.sqrt(np.mean(np.square(X, dtype=np.float64))))
        assert f"root-mean-square value {rms:.4g}" in msgs[0]
        assert "value_range" in msgs[0] and "VE or EDM" in msgs[0]


def test_uint8_data_warns_too():
    X = np.random.default_rng(2).integers(0, 256, (100, 64), dtype=np.uint8)
    with pytest.warns(RuntimeWarning, match="variance preserving"):
        ms.EmpiricalScore(X, ms.VP())


def test_package_is_typed():
    assert (Path(ms.__file__).parent / "py.typed").is_file()


def test_root_mean_square_is_float64_without_overflow():
    from mixscore.scales import root_mean_square

    big = np.full((5, 3), 3e20, np.float32)  # its float32 squares overflow
    assert root_mean_square(big) == pytest.approx(float(np.float32(3e20)), rel=1e-12)
    x = np.random.default_rng(3).standard_normal((700, 9))
    assert root_mean_square(x, chunk=50) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-12)
