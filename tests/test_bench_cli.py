"""``mixscore bench --quick`` at tiny sizes (issue 11, item 14): every table is there, with its
NumPy reference row, mixscore's answers agree with the reference, and ratios are time ratios."""

import json

import pytest
from mixscore.cli import main


def test_bench_quick_tiny(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = [
        "bench",
        "--quick",
        "--m",
        "16",
        "--n",
        "64",
        "--dim",
        "4",
        "--steps",
        "6",
        "--repeats",
        "1",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    for title in ("### score engine (denoiser)", "### nearest (exact k-NN)", "### sampler"):
        assert title in text
    result = json.loads(out.read_text())
    assert result["sizes"]["m"] == 16 and result["sizes"]["n"] == 64
    by_table = {}
    for r in result["rows"]:
        by_table.setdefault((r["table"], r["case"]), []).append(r)
    assert len({t for t, _ in by_table}) == 3
    for rows in by_table.values():
        ref = [r for r in rows if "numpy" in r["runner"]]
        ours = [r for r in rows if r["runner"].startswith("mixscore")]
        assert len(ref) == 1 and len(ours) == 1
        assert ref[0]["vs_numpy"] == 1.0
        r = ours[0]
        assert r["vs_numpy"] == pytest.approx(ref[0]["seconds"] / r["seconds"], rel=1e-12)
        assert r["max_diff"] < 1e-4  # float32 answers against the float64 reference
        assert f"| {r['case']} | {r['runner']} |" in text


def test_bench_rejects_bad_sizes(capsys):
    assert main(["bench", "--quick", "--m", "0"]) == 2
    assert "--m must be >= 1, got 0" in capsys.readouterr().err
