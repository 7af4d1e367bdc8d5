"""torch stays optional: ``import mixscore`` never imports it, ``mixscore.torch`` without it says
how to get it; the sampler's support for adapters (v outputs, defaults from the callable)."""

import subprocess
import sys
import textwrap

import mixscore as ms
import numpy as np


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def test_import_mixscore_does_not_import_torch():
    r = run("""
        import sys, mixscore
        assert "torch" not in sys.modules, "import mixscore imported torch"
        mixscore.EmpiricalScore([[0.0], [1.0]], mixscore.VP()).score([[0.5]], 0.5)
        assert "torch" not in sys.modules
    """)
    assert r.returncode == 0, r.stderr


def test_without_torch_mixscore_torch_says_how_to_get_it():
    r = run("""
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("No module named 'torch'")
        sys.meta_path.insert(0, NoTorch())
        import mixscore as ms
        for get in (lambda: ms.torch, lambda: __import__("mixscore.torch")):
            try:
                get()
            except ImportError as e:
                assert 'pip install "mixscore[torch]"' in str(e), str(e)
            else:
                raise AssertionError("no ImportError")
    """)
    assert r.returncode == 0, r.stderr


def _v_of(model, x, t):
    """v = alpha eps - sigma xhat0 (SCIENCE.md section 1), from the float64 reference."""
    st = model.stats(x, t, include=("eps", "denoised"))
    sch = model.schedule
    return float(sch.alpha(t)) * st.eps - float(sch.sigma(t)) * st.denoised


def test_sampler_takes_v_outputs():
    X = np.random.default_rng(0).standard_normal((30, 3))
    for sch in (ms.VP(), ms.VE()):  # alpha^2 + sigma^2 = 1 and not
        model = ms.EmpiricalScore(X, sch)
        ref = ms.EmpiricalScore(X, sch, backend="numpy")
        kw = dict(sampler="ddim", steps=40, seed=3)
        exact = ms.sample(model, 20, **kw).samples
        user = ms.sample(
            lambda x, t, ref=ref: _v_of(ref, x, t), 20, schedule=sch, dim=3, output="v", **kw
        ).samples
        np.testing.assert_allclose(user, exact, rtol=0, atol=1e-9 * np.abs(exact).max())


def test_sampler_defaults_come_from_the_callable():
    X = np.random.default_rng(1).standard_normal((20, 2))
    model = ms.EmpiricalScore(X, ms.VP())

    class Denoiser:
        schedule, output, dim = model.schedule, "denoised", 2

        def __call__(self, x, t):
            return model.denoise(x, t)

    a = ms.sample(model, 10, sampler="ddpm", steps=30, seed=2).samples
    b = ms.sample(Denoiser(), 10, sampler="ddpm", steps=30, seed=2).samples
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)
