"""CLI output files (issue 18): never over an input or another output, existing files replaced
only with --force, and the user's usual permissions (umask) on every file written."""

import os
import stat

import numpy as np
import pytest
from conftest import rng
from mixscore.cli import main


@pytest.fixture
def data(tmp_path):
    g = rng(2)
    np.save(tmp_path / "X.npy", g.standard_normal((30, 4)))
    np.save(tmp_path / "S.npy", g.standard_normal((6, 4)))
    return tmp_path


def _run(*argv):
    return main(["memorization", *map(str, argv)])


def _snapshot(folder):
    return {p: (folder / p).read_bytes() for p in sorted(os.listdir(folder))}


def _refused(capsys, d, argv, match):
    before = _snapshot(d)
    assert _run(*argv) == 2
    err = capsys.readouterr().err
    assert match in err, err
    assert _snapshot(d) == before, "a file was written or changed on error"


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_never_replace_inputs_or_each_other(data, capsys):
    d = data
    base = ["--samples", d / "S.npy", "--train", d / "X.npy"]
    _refused(
        capsys,
        d,
        [*base, "--json", d / "S.npy", "--force"],
        "--json '%s' is the --samples input" % (d / "S.npy"),
    )
    _refused(capsys, d, [*base, "--json", d / "X.npy", "--force"], "is the --train input")
    os.symlink(d / "X.npy", d / "link.json")  # the same file under another name
    _refused(capsys, d, [*base, "--json", d / "link.json", "--force"], "is the --train input")
    pytest.importorskip("matplotlib")
    _refused(
        capsys,
        d,
        [*base, "--json", d / "o.png", "--plot", d / "o.png"],
        "--json and --plot both name",
    )


def test_existing_output_needs_force(data, capsys):
    d = data
    base = ["--samples", d / "S.npy", "--train", d / "X.npy"]
    (d / "r.json").write_text("keep me")
    _refused(capsys, d, [*base, "--json", d / "r.json"], "exists; add --force to replace it")
    assert (d / "r.json").read_text() == "keep me"
    assert _run(*base, "--json", d / "r.json", "--force") == 0
    assert f"replaced {d / 'r.json'}" in capsys.readouterr().out
    assert (d / "r.json").read_text().startswith("{")


def test_outputs_get_umask_permissions(data, capsys):
    d = data
    old = os.umask(0o022)
    try:
        (d / "reference022").write_text("")
        assert _run("--samples", d / "S.npy", "--train", d / "X.npy", "--json", d / "r.json") == 0
    finally:
        os.umask(old)
    assert _mode(d / "r.json") == _mode(d / "reference022") == 0o644


def test_demo_refuses_to_overwrite_without_force(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from mixscore import demo

    out = tmp_path / "demo"
    out.mkdir()
    (out / "report.json").write_text("an earlier report")
    calls = []
    monkeypatch.setattr(demo, "run", lambda *a, **k: calls.append(1))  # must not be reached
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 2
    assert "already holds report.json; add --force" in capsys.readouterr().err
    assert calls == [] and (out / "report.json").read_text() == "an earlier report"
    with pytest.raises(FileExistsError, match="add --force"):
        demo.write({}, {}, None, None, out)
    demo.check_output_folder(out, force=True)  # --force accepts the folder
