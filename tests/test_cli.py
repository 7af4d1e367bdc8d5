"""The command line: mixscore memorization (npy / npz / PNG folders, JSON, plots) and its
errors, which must leave nothing written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import rng
from mixscore.cli import main


@pytest.fixture
def data(tmp_path):
    g = rng(0)
    X = g.uniform(0, 1, (120, 8, 8)).astype(np.float32)
    S = np.concatenate([X[:10] + 1e-3 * g.standard_normal((10, 8, 8)),
                        g.uniform(0, 1, (20, 8, 8))]).astype(np.float32)
    np.save(tmp_path / "S.npy", S)
    np.save(tmp_path / "X.npy", X)
    return tmp_path, S, X


def _run(*argv):
    return main(["memorization", *map(str, argv)])


def test_npy_summary_and_json(data, capsys):
    d, S, X = data
    out = d / "rep.json"
    rc = _run("--samples", d / "S.npy", "--train", d / "X.npy", "--tau", 1.0, "--scale",
              "pixels255", "--json", out)
    assert rc == 0
    text = capsys.readouterr().out
    assert "mixscore memorization report" in text and "ratio rule d1/d2 < 0.3333" in text
    rep = json.loads(out.read_text())
    assert rep["n_samples"] == 30 and rep["n_train"] == 120 and rep["dim"] == 64
    assert rep["fraction_ratio"] == pytest.approx(10 / 30)
    assert rep["scale_factor"] == 255.0
    assert rep["per_sample"]["nn_index"][:10] == list(range(10))


def test_npz_keys_k_and_ratio(data, capsys):
    d, S, X = data
    np.savez(d / "both.npz", samples=S, train=X)
    rc = _run("--samples", f"{d / 'both.npz'}:samples", "--train", f"{d / 'both.npz'}:train",
              "--k", 3, "--ratio", 0.5)
    assert rc == 0
    assert "d1/d2 < 0.5" in capsys.readouterr().out
    np.savez(d / "one.npz", S)
    assert _run("--samples", d / "one.npz", "--train", d / "X.npy") == 0


def test_plot(data, capsys):
    pytest.importorskip("matplotlib")
    d, S, X = data
    png = d / "fig.png"
    assert _run("--samples", d / "S.npy", "--train", d / "X.npy", "--plot", png) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    flat = d / "flat.npy"
    np.save(flat, S.reshape(30, -1)[:, :10])
    np.save(d / "flatX.npy", X.reshape(120, -1)[:, :10])
    svg = d / "hist.svg"  # not image-like: histogram only
    assert _run("--samples", flat, "--train", d / "flatX.npy", "--plot", svg) == 0
    assert b"<svg" in svg.read_bytes()[:400]


def test_png_folders(tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image")
    g = rng(1)
    X = g.integers(0, 256, (12, 6, 6, 3), dtype=np.uint8)
    for name, arr in (("train", X), ("samples", X[[3, 5, 7]])):
        (tmp_path / name).mkdir()
        for i, img in enumerate(arr):
            Image.fromarray(img).save(tmp_path / name / f"{i:03d}.png")
    out = tmp_path / "r.json"
    assert _run("--samples", tmp_path / "samples", "--train", tmp_path / "train",
                "--json", out) == 0
    rep = json.loads(out.read_text())
    assert rep["dim"] == 108 and rep["per_sample"]["nn_index"] == [3, 5, 7]
    assert rep["per_sample"]["d1"] == [0.0, 0.0, 0.0]


def _assert_error(capsys, argv, match, folder):
    before = sorted(os.listdir(folder))
    rc = _run(*argv)
    err = capsys.readouterr().err
    assert rc == 2
    assert "mixscore memorization: error:" in err and match in err, err
    assert sorted(os.listdir(folder)) == before, "a file was written on error"


def test_errors_write_nothing(data, capsys):
    d, S, X = data
    js, png = d / "o.json", d / "o.png"
    try:
        import matplotlib  # noqa: F401

        outs = ["--json", js, "--plot", png]
    except ImportError:  # the checks run without matplotlib too, with --json only
        outs = ["--json", js]
    base = ["--samples", d / "S.npy", "--train", d / "X.npy"]
    np.save(d / "bad_dim.npy", np.zeros((5, 7), np.float32))
    nan = S.copy()
    nan[2, 1, 1] = np.nan
    np.save(d / "nan.npy", nan)
    (d / "garbage.npy").write_bytes(b"this is not a numpy file")
    np.savez(d / "two.npz", a=S, b=X)
    np.save(d / "empty.npy", np.zeros((0, 64), np.float32))
    cases = [
        (["--samples", d / "missing.npy", "--train", d / "X.npy"], "no such file"),
        (["--samples", d / "garbage.npy", "--train", d / "X.npy"], "cannot read --samples"),
        (["--samples", d / "bad_dim.npy", "--train", d / "X.npy"],
         "samples must have shape (M, 64) to match train"),
        (["--samples", d / "nan.npy", "--train", d / "X.npy"], "samples contains NaN or Inf"),
        (["--samples", d / "empty.npy", "--train", d / "X.npy"], "samples is empty"),
        (["--samples", d / "two.npz", "--train", d / "X.npy"], "choose one as"),
        (["--samples", f"{d / 'two.npz'}:c", "--train", d / "X.npy"], "has no array 'c'"),
        ([*base, "--ratio", 1.5], "--ratio must lie in (0, 1)"),
        ([*base, "--ratio", 0], "--ratio must lie in (0, 1)"),
        ([*base, "--tau", -1], "tau must be a finite number > 0"),
        ([*base, "--k", 1], "2 <= k <= N = 120"),
        ([*base, "--k", 500], "2 <= k <= N = 120"),
    ]
    for argv, match in cases:
        _assert_error(capsys, [*argv, *outs], match, d)
    _assert_error(capsys, [*base, "--json", js, "--plot", d / "o.jpg"], "must end in one of", d)
    _assert_error(capsys, [*base, "--json", d / "nodir" / "o.json"], "does not exist", d)
    _assert_error(capsys, [*base, "--json", d], "is a folder", d)


def test_module_entry_point_and_version(data):
    d, _, _ = data
    r = subprocess.run([sys.executable, "-m", "mixscore", "memorization", "--samples",
                        str(d / "S.npy"), "--train", str(d / "X.npy")],
                       capture_output=True, text=True, cwd=d)
    assert r.returncode == 0 and "mixscore memorization report" in r.stdout
    r = subprocess.run([sys.executable, "-m", "mixscore", "--version"], capture_output=True,
                       text=True, cwd=d)
    assert r.returncode == 0 and "mixscore" in r.stdout
    r = subprocess.run([sys.executable, "-m", "mixscore", "memorization"], capture_output=True,
                       text=True, cwd=d)
    assert r.returncode == 2 and "--samples" in r.stderr


def test_plot_without_matplotlib_fails_first(data, capsys, monkeypatch):
    d, _, _ = data
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    _assert_error(capsys, ["--samples", d / "S.npy", "--train", d / "X.npy", "--json",
                           d / "o.json", "--plot", d / "o.png"], "needs matplotlib", d)


def test_png_samples_against_unit_range_train_are_refused_then_mapped(tmp_path, capsys):
    """Issue 11, item 1: PNG samples (0..255) against a training set in [-1, 1]."""
    Image = pytest.importorskip("PIL.Image")
    g = rng(2)
    X = g.integers(0, 256, (50, 8, 8)).astype(np.float64) / 127.5 - 1  # exactly 8-bit levels
    (tmp_path / "pngs").mkdir()
    for i in range(20):
        pixels = np.round((X[i] + 1) * 127.5).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / "pngs" / f"{i:03d}.png")
    np.save(tmp_path / "train.npy", X)
    np.save(tmp_path / "samples.npy", X[:20])
    args = ["--samples", tmp_path / "pngs", "--train", tmp_path / "train.npy"]
    out = tmp_path / "r.json"
    assert _run(*args, "--json", out) == 2
    err = capsys.readouterr().err
    assert "samples span [0, 255] but train spans [-1, 1]" in err
    assert "--samples-range 0 255" in err and "--no-scale-check" in err
    assert not out.exists()
    # mapped explicitly: the same answer as the samples saved as .npy in the training units
    assert _run(*args, "--samples-range", 0, 255, "--json", out) == 0
    mapped = json.loads(out.read_text())
    assert _run("--samples", tmp_path / "samples.npy", "--train", tmp_path / "train.npy",
                "--json", tmp_path / "npy.json") == 0
    npy = json.loads((tmp_path / "npy.json").read_text())
    assert mapped["fraction_ratio"] == npy["fraction_ratio"] == 1.0
    assert mapped["inputs"]["samples"]["path"] == str(tmp_path / "pngs")
    assert mapped["inputs"]["samples_range"] == {"from": [0.0, 255.0], "to": [-1.0, 1.0]}
