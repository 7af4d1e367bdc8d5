"""End to end: ``mixscore demo --quick`` and ``mixscore info`` through the CLI entry point."""

import json

import numpy as np
import pytest
from mixscore.cli import main

pytest.importorskip("matplotlib")


@pytest.mark.parametrize("args, n", [(["--quick"], 64), ([], 500)])
def test_demo_writes_figure_json_and_summary(tmp_path, capsys, args, n):
    """The quick run and the README's default one (its fractions reach 0 and 1 exactly)."""
    out = tmp_path / "demo"
    assert main(["demo", *args, "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "memorized" in printed and str(out / "report.json") in printed
    assert sorted(p.name for p in out.iterdir()) == ["memorization.png", "report.json",
                                                     "summary.md"]
    png = (out / "memorization.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["n_train"] == 1797 and report["data"]["dim"] == 64
    assert report["settings"]["sampler"] == "ddpm" and report["settings"]["n_samples"] == n
    rows = report["results"]
    t = np.array([r["t_end"] for r in rows])
    frac = np.array([r["memorized_fraction"] for r in rows])
    assert np.all(np.diff(t) > 0)
    # the run's own numbers: near-total memorization at the smallest t_end, falling with t_end
    assert frac[0] >= 0.9
    assert frac[-1] < frac[0] - 0.5
    assert np.all(np.diff(frac) <= 0.05)
    for r in rows:
        lo, hi = r["ci95"]
        assert lo <= r["memorized_fraction"] <= hi
    assert "| t_end |" in (out / "summary.md").read_text()


@pytest.mark.parametrize("args,match", [
    (["--n", "0"], "--n must be an integer >= 1"),
    (["--data", "mnist"], "unknown data set 'mnist'"),
])
def test_demo_bad_input_writes_nothing(tmp_path, capsys, args, match):
    out = tmp_path / "out"
    assert main(["demo", "--quick", "--out", str(out), *args]) == 2
    assert match in capsys.readouterr().err
    assert not out.exists()


def test_demo_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["demo", "--quick", "--out", str(blocker / "sub")]) == 2
    assert "--out" in capsys.readouterr().err
    assert blocker.read_text() == "x"
    assert main(["demo", "--quick", "--out", str(blocker)]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_info(capsys):
    assert main(["info"]) == 0
    assert "engine instruction set" in capsys.readouterr().out
    assert main(["info", "--json"]) == 0
    assert "backends" in json.loads(capsys.readouterr().out)


def test_info_says_what_gpu_support_is_usable(capsys, monkeypatch):
    import importlib.util

    import mixscore as ms
    from mixscore import system

    d = system.info()
    gpu_backends = [b for b in ms.available_backends() if b not in ("cpu", "numpy")]
    assert d["gpu"]["usable"] == bool(gpu_backends)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "cupy" else real(name, *a))
    monkeypatch.setattr(system, "available", lambda: ["cpu", "numpy"])
    assert main(["info"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("GPU"))
    from mixscore.backends.cuda import cuda_problem

    problem = cuda_problem()
    assert (problem is None) == ("usable: backend cuda" in line)
    if problem is not None:  # says what is missing (the extension or a device)
        assert f"backend='cuda' not usable: {problem}" in line
    monkeypatch.setattr(system, "available", lambda: ["cuda", "cpu", "numpy"])
    assert main(["info", "--json"]) == 0
    gpu = json.loads(capsys.readouterr().out)["gpu"]
    assert gpu["usable"] and gpu["backends"] == ["cuda"] and gpu["cupy_installed"]
