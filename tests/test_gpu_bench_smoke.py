"""The GPU benchmark scripts (bench/gpu_compare.py, bench/gpu_sampler.py) run on the CPU at
tiny sizes (their --device cpu smoke mode), so they work when a GPU session runs them
(bench/gpu_session.sh): every runner answers, the fallback agrees with the float64 reference,
the JSON has the rows. Their times say nothing about GPUs."""

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("array_api_compat")
BENCH = Path(__file__).resolve().parents[1] / "bench"
pytestmark = pytest.mark.filterwarnings("ignore:.*stiffness rho:RuntimeWarning")


def script(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_compare_smoke(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    script("gpu_compare").main(["--device", "cpu", "--quick", "--dims", "2", "40", "--ns", "300",
                                "--m", "16", "--repeats", "1", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    runners = {r["runner"] for r in rows}
    assert "dense torch fp32" in runners and any("mixscore" in r for r in runners)
    for r in rows:
        if "mixscore" in r["runner"]:
            assert r["max_err"] < 1e-4, r  # float32 answers against the float64 reference
    assert "dense torch fp32" in capsys.readouterr().out


def test_gpu_sampler_smoke(tmp_path):
    out = tmp_path / "sampler.json"
    script("gpu_sampler").main(["--device", "cpu", "--steps", "3", "--rows", "2,200,16",
                                "16,300,8", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["D"], r["backend"], r["fused"]) for r in rows] == [(2, "cupy", False),
                                                                   (16, "cupy", False)]
    for r in rows:
        assert r["ms_per_step"] > 0 and 0 < r["pass_share"] and r["cpu_ms_per_step"] > 0
