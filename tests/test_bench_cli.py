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


def test_bench_json_is_checked_before_the_run_and_needs_force(tmp_path, capsys):
    """An existing --json file is kept without --force, and refused before anything runs."""
    keep = tmp_path / "train.npy"
    keep.write_bytes(b"not mine to replace")
    tiny = ["bench", "--quick", "--only", "score", "--m", "4", "--n", "8", "--dim", "2",
            "--repeats", "1"]
    assert main([*tiny, "--json", str(keep)]) == 2
    err = capsys.readouterr()
    assert "exists; add --force" in err.err and "###" not in err.out  # nothing ran
    assert keep.read_bytes() == b"not mine to replace"
    assert main([*tiny, "--json", str(tmp_path / "no" / "b.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*tiny, "--json", str(keep), "--force"]) == 0
    assert f"replaced {keep}" in capsys.readouterr().out
    assert json.loads(keep.read_text())["sizes"]["m"] == 4
