"""DSM floor and collapse curves against quadrature of the two-point closed forms."""

import mixscore as ms
import numpy as np
import pytest


def two_point_expectation(fn, a, s2, k=4001):
    """E_x[fn(x)] for x ~ (N(a, s2) + N(-a, s2)) / 2 by the trapezoid rule."""
    s = np.sqrt(s2)
    x = np.linspace(-a - 12 * s, a + 12 * s, k)
    p = 0.5 * (np.exp(-((x - a) ** 2) / (2 * s2)) + np.exp(-((x + a) ** 2) / (2 * s2)))
    p /= np.sqrt(2 * np.pi * s2)
    return np.trapezoid(p * fn(x), x)


def binary_entropy(x, a, s2):
    """The posterior entropy at x of the two points +-a at variance s2."""
    u = 2 * a * x / s2  # p = sigmoid(u): H = log(1 + e^-u) + (1 - p) u, symmetric in u
    u = np.abs(u)
    return np.logaddexp(0.0, -u) + u * np.exp(-np.logaddexp(0.0, u))


def test_dsm_floor_two_points():
    sch = ms.VP()
    m = ms.EmpiricalScore(ms.datasets.two_points()[:, :1], sch)
    times = np.array([0.2, 0.5, 1.0])
    fl = ms.analysis.dsm_floor(m, times, n=3000, seed=1)
    for k, t in enumerate(times):
        a, s2 = float(sch.alpha(t)), float(sch.sigma2(t))
        want = two_point_expectation(
            lambda x, a=a, s2=s2: a**2 / np.cosh(a * x / s2) ** 2 / s2**2, a, s2
        )
        assert abs(fl.mean[k] - want) < 5 * fl.stderr[k] + 1e-12, (t, fl.mean[k], want)


def test_collapse_curve_two_points():
    sch = ms.VP()
    m = ms.EmpiricalScore(ms.datasets.two_points()[:, :1], sch)
    times = np.geomspace(0.01, 1.0, 12)
    cc = ms.analysis.collapse_curve(m, times, n=3000, seed=2, threshold=0.3)
    want = np.array(
        [
            two_point_expectation(
                lambda x, t=t: binary_entropy(x, float(sch.alpha(t)), float(sch.sigma2(t))),
                float(sch.alpha(t)),
                float(sch.sigma2(t)),
            )
            for t in times
        ]
    )
    np.testing.assert_allclose(cc.entropy, want, atol=0.02)
    assert np.all(cc.entropy <= np.log(2) + 1e-12) and np.all(cc.n_eff >= 1)
    # the collapse time sits where the mean entropy crosses the threshold
    j = np.flatnonzero(cc.entropy < 0.3)[-1]
    assert times[j] <= cc.collapse_time <= times[j + 1]


def test_collapse_curve_plot_and_errors(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    m = ms.EmpiricalScore(ms.datasets.gaussian_points(), ms.VE())
    cc = ms.analysis.collapse_curve(m, np.geomspace(1e-3, 1.0, 6), n=200)
    ax = cc.plot()
    ax.figure.savefig(tmp_path / "collapse.png")
    assert (tmp_path / "collapse.png").stat().st_size > 0
    with pytest.raises(ValueError, match="threshold"):
        ms.analysis.collapse_curve(m, [0.5], threshold=-1.0)
    with pytest.raises(ValueError, match="times must lie"):
        ms.analysis.dsm_floor(m, [0.0, 0.5])


def test_smoothed_model_curves_use_its_mixture_and_the_floor_refuses_it():
    """With Smoothing(h) the queries come from the smoothed mixture (variance sigma^2 +
    alpha^2 h^2), where the posterior entropy is that mixture's; the DSM floor, a property of
    the training points, refuses the blurred model (also ms.torch.dsm_floor)."""
    sch, h = ms.Brownian(T=10), 0.5
    X = np.array([[-1.0], [1.0]])
    m = ms.EmpiricalScore(X, sch, regularizer=ms.regularizers.Smoothing(h))
    times = np.array([0.01, 0.1, 1.0])
    cc = ms.analysis.collapse_curve(m, times, n=4000, seed=3)
    for k, t in enumerate(times):
        s2 = float(sch.sigma2(t)) + h * h
        want = two_point_expectation(lambda x, s2=s2: binary_entropy(x, 1.0, s2), 1.0, s2)
        assert abs(cc.entropy[k] - want) < 0.01, (t, cc.entropy[k], want)
    # per-point bandwidths, equal here, give the same queries and the same curve
    per_point = ms.EmpiricalScore(X, sch, regularizer=ms.regularizers.Smoothing(np.full(2, h)))
    np.testing.assert_allclose(ms.analysis.collapse_curve(per_point, times, n=4000, seed=3).entropy,
                               cc.entropy, rtol=1e-9)
    with pytest.raises(ValueError, match="dsm_floor: the model's Smoothing blurs the data"):
        ms.analysis.dsm_floor(m, times)
    with pytest.raises(ValueError, match=r"n must be an int >= 2"):
        ms.analysis.dsm_floor(ms.EmpiricalScore(X, sch), times, n=1)
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="dsm_floor: the model's Smoothing blurs the data"):
        ms.torch.dsm_floor(m, torch.zeros(2, 1, dtype=torch.float64), 0.1)
