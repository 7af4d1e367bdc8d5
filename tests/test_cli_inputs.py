"""CLI input safety (issue 18): PNGs read at their stored bit depth, memory bombs refused from
their declared sizes, every loading failure a clear error with exit code 2 and nothing written."""

import json
import os
import re
import struct
import zipfile
import zlib

import numpy as np
import pytest
from conftest import rng
from mixscore.cli import main

Image = pytest.importorskip("PIL.Image")


def _run(*argv):
    return main(["memorization", *map(str, argv)])


def write_png(path, arr, depth, colour):
    """A minimal PNG written from the specification (filter 0 rows, one IDAT), independent of
    Pillow: depths 8 and 16, any colour type but palette."""
    arr = np.asarray(arr)
    h, w = arr.shape[:2]
    rows = arr.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1)
    raw = b"".join(b"\x00" + r.tobytes() for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw))
    path.write_bytes(png + _chunk(b"IEND", b""))


def _folder(path, images, save):
    path.mkdir()
    for i, img in enumerate(images):
        save(path / f"{i:03d}.png", img)
    return path


def _json_without_inputs(path):
    rep = json.loads(path.read_text())
    rep.pop("inputs", None)
    return rep


def test_16bit_png_folder_equals_npy(tmp_path, capsys):
    g = rng(5)
    X = g.integers(300, 65536, (15, 6, 7), dtype=np.uint16)
    S = X[[2, 9]].copy()
    S[0, 0, 0] += 7  # near, not equal, to training image 2
    new = g.integers(300, 65536, (1, 6, 7), dtype=np.uint16)  # above 255 everywhere
    S = np.concatenate([S, new])
    save = lambda p, a: Image.fromarray(a).save(p)  # noqa: E731 - Pillow writes mode I;16
    _folder(tmp_path / "train", X, save)
    _folder(tmp_path / "samples", S, save)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "S.npy", S)
    assert (
        _run(
            "--samples",
            tmp_path / "samples",
            "--train",
            tmp_path / "train",
            "--json",
            tmp_path / "png.json",
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "--train: 15 PNG images (6x7, 1 channel(s), 16-bit)" in out
    assert "read as stored integers 0..65535" in out
    assert (
        _run(
            "--samples",
            tmp_path / "S.npy",
            "--train",
            tmp_path / "X.npy",
            "--json",
            tmp_path / "npy.json",
        )
        == 0
    )
    png, npy = (
        _json_without_inputs(tmp_path / "png.json"),
        _json_without_inputs(tmp_path / "npy.json"),
    )
    assert png == npy
    # an independent check of the distances: the 16-bit values were not clipped at 255
    d1 = np.sqrt(((S[:, None].astype(float) - X[None].astype(float)) ** 2).sum((2, 3))).min(1)
    np.testing.assert_allclose(png["per_sample"]["d1"], d1, rtol=1e-12)
    assert png["per_sample"]["d1"][0] == 7.0 and png["per_sample"]["d1"][2] > 1000


@pytest.mark.parametrize("mode, shape", [("L", ()), ("LA", (2,)), ("RGB", (3,)), ("RGBA", (4,))])
def test_8bit_modes_read_as_stored(tmp_path, capsys, mode, shape):
    X = rng(6).integers(0, 256, (5, 4, 3, *shape), dtype=np.uint8)
    _folder(tmp_path / "t", X, lambda p, a: Image.fromarray(a, mode).save(p))
    assert (
        _run("--samples", tmp_path / "t", "--train", tmp_path / "t", "--json", tmp_path / "r.json")
        == 0
    )
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["dim"] == X[0].size and rep["per_sample"]["d1"] == [0.0] * 5
    assert rep["d2_summary"] == _run_npy_d2(tmp_path, X)
    assert "0..255" in rep["inputs"]["--train"]


def test_image_stacks_in_different_layouts_are_refused(tmp_path, capsys):
    """Same values per image, another layout (transposed; gray against RGB): exit 2."""
    g = np.random.default_rng(1)
    np.save(tmp_path / "s.npy", g.random((4, 12, 16)))
    np.save(tmp_path / "t.npy", g.random((10, 16, 12)))
    np.save(tmp_path / "rgb.npy", g.random((10, 8, 8, 3)))
    np.save(tmp_path / "gray.npy", g.random((4, 8, 24)))
    for s, t, shapes in [("s", "t", r"\(12, 16\) but --train images have shape \(16, 12\)"),
                         ("gray", "rgb", r"\(8, 24\) but --train images have shape \(8, 8, 3\)")]:
        out = tmp_path / f"{s}.json"
        assert _run("--samples", tmp_path / f"{s}.npy", "--train", tmp_path / f"{t}.npy",
                    "--json", out) == 2
        assert re.search(r"--samples are images of shape " + shapes, capsys.readouterr().err)
        assert not out.exists()


def test_errors_name_the_options(tmp_path, capsys):
    g = np.random.default_rng(2)
    np.save(tmp_path / "s.npy", g.random((5, 4)))
    np.save(tmp_path / "t.npy", g.random((9, 4)))
    base = ["--samples", tmp_path / "s.npy", "--train", tmp_path / "t.npy"]
    for extra, match in [(["--copy-rule", "tau"], "--copy-rule='tau' needs tau"),
                         (["--samples-range", "1", "0"], "--samples-range must be finite"),
                         (["--interval", "bootstrap", "--n-boot", "0"], "--n-boot must be"),
                         (["--image-shape", "5", "--plot", tmp_path / "p.png"],
                          r"--image-shape 5: give H W or H W C with H \* W \* C = 4"),
                         (["--seed", "-1"], "--seed must be an int >= 0")]:
        assert _run(*base, *extra) == 2
        assert re.search(match, capsys.readouterr().err), extra
    assert not (tmp_path / "p.png").exists()


def _run_npy_d2(tmp_path, X):
    np.save(tmp_path / "X.npy", X)
    assert (
        _run(
            "--samples",
            tmp_path / "X.npy",
            "--train",
            tmp_path / "X.npy",
            "--json",
            tmp_path / "x.json",
        )
        == 0
    )
    return json.loads((tmp_path / "x.json").read_text())["d2_summary"]


def test_palette_and_16bit_gray_from_spec_writer(tmp_path, capsys):
    g = rng(7)
    pal = g.integers(0, 256, (16, 3), dtype=np.uint8)
    idx = g.integers(0, 16, (4, 5, 5), dtype=np.uint8)

    def save_p(p, a):
        im = Image.fromarray(a, "P")
        im.putpalette(pal.ravel().tolist())
        im.save(p)

    _folder(tmp_path / "p", idx, save_p)
    np.save(tmp_path / "rgb.npy", pal[idx])  # the palette expanded independently
    assert (
        _run(
            "--samples",
            tmp_path / "p",
            "--train",
            tmp_path / "rgb.npy",
            "--json",
            tmp_path / "p.json",
        )
        == 0
    )
    assert json.loads((tmp_path / "p.json").read_text())["per_sample"]["d1"] == [0.0] * 4
    G = g.integers(0, 65536, (3, 4, 4), dtype=np.uint16)
    _folder(tmp_path / "g16", G, lambda p, a: write_png(p, a, 16, 0))
    np.save(tmp_path / "g16.npy", G)
    assert (
        _run(
            "--samples",
            tmp_path / "g16",
            "--train",
            tmp_path / "g16.npy",
            "--json",
            tmp_path / "g.json",
        )
        == 0
    )
    assert json.loads((tmp_path / "g.json").read_text())["per_sample"]["nn_index"] == [0, 1, 2]


def _assert_error(capsys, argv, match, folder):
    before = sorted(os.listdir(folder))
    rc = _run(*argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "mixscore memorization: error:" in err and match in err, err
    assert sorted(os.listdir(folder)) == before, "a file was written on error"


def test_png_refusals(tmp_path, capsys):
    np.save(tmp_path / "X.npy", np.zeros((3, 12), np.float32))
    out = ["--json", tmp_path / "o.json"]
    rgb16 = _folder(
        tmp_path / "rgb16",
        rng(8).integers(0, 65536, (2, 2, 2, 3)),
        lambda p, a: write_png(p, a, 16, 2),
    )
    _assert_error(
        capsys,
        ["--samples", rgb16, "--train", tmp_path / "X.npy", *out],
        "2x2 16-bit RGB) without loss",
        tmp_path,
    )
    mixed = _folder(
        tmp_path / "mixed",
        [np.zeros((2, 3), np.uint8), np.zeros((2, 3), np.uint16)],
        lambda p, a: Image.fromarray(a).save(p),
    )
    _assert_error(
        capsys,
        ["--samples", mixed, "--train", tmp_path / "X.npy", *out],
        "different value ranges",
        tmp_path,
    )
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "a.png").write_bytes(b"GIF89a not a png at all, really not one")
    _assert_error(
        capsys,
        ["--samples", fake, "--train", tmp_path / "X.npy", *out],
        "image 'a.png': not a PNG file",
        tmp_path,
    )
    broken = _folder(
        tmp_path / "broken", [np.zeros((4, 3), np.uint8)], lambda p, a: Image.fromarray(a).save(p)
    )
    data = (broken / "000.png").read_bytes()
    (broken / "000.png").write_bytes(data[:40])  # IHDR intact, image data cut off
    _assert_error(
        capsys,
        ["--samples", broken, "--train", tmp_path / "X.npy", *out],
        "cannot read --samples",
        tmp_path,
    )


def test_memory_bombs_refused_before_loading(tmp_path, capsys):
    d = tmp_path
    np.save(d / "X.npy", np.zeros((3, 4), np.float32))
    out = ["--json", d / "o.json"]
    train = ["--train", d / "X.npy"]
    # a .npy declaring 1e12 values (the header only; the data are absent)
    header = {"descr": "<f4", "fortran_order": False, "shape": (1_000_000, 1_000_000)}
    with open(d / "huge.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
    _assert_error(
        capsys,
        ["--samples", d / "huge.npy", *train, *out],
        "declares 1,000,000,000,000 values (8e+03 GB as float64), over the input limit of 2 GB",
        d,
    )
    # a small compressed .npz of zeros that decompresses to 8 MB; refused under a 1 MB limit
    np.savez_compressed(d / "zeros.npz", a=np.zeros((1000, 1000), np.float64))
    assert (d / "zeros.npz").stat().st_size < 20_000
    _assert_error(
        capsys,
        ["--samples", d / "zeros.npz", *train, "--max-input-gb", 0.001, *out],
        "zeros.npz:a (shape (1000, 1000), float64) declares 1,000,000 values",
        d,
    )
    # a PNG declaring 200 Mpx (over Pillow's 178 Mpx bomb limit): refused from its IHDR, so
    # its image data (here a stub) are never decoded
    big = d / "big"
    big.mkdir()
    raw = zlib.compress(b"\x00" * 1000)
    ihdr = struct.pack(">IIBBBBB", 20_000, 10_000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", raw)
    (big / "a.png").write_bytes(png + _chunk(b"IEND", b""))
    _assert_error(
        capsys,
        ["--samples", big, *train, "--max-input-gb", 1, *out],
        "1 PNG images of 10000x20000 8-bit gray) declares 200,000,000 values",
        d,
    )
    # pickled objects are refused from the header, broken or foreign zips when read
    np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _assert_error(
        capsys,
        ["--samples", d / "obj.npy", *train, *out],
        "holds Python objects (pickle), refused",
        d,
    )
    (d / "notzip.npz").write_bytes(b"PK\x03\x04 broken zip")
    _assert_error(capsys, ["--samples", d / "notzip.npz", *train, *out], "cannot read", d)
    with zipfile.ZipFile(d / "raw.npz", "w") as z:
        z.writestr("a", b"\x00" * 100)  # a member that is not an .npy array
    _assert_error(capsys, ["--samples", d / "raw.npz", *train, *out], "not a NumPy .npy array", d)
    _assert_error(
        capsys,
        ["--samples", d / "X.npy", *train, "--max-input-gb", 0, *out],
        "--max-input-gb must be a finite number of gigabytes > 0",
        d,
    )


def _chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def test_out_of_memory_is_a_clear_error(tmp_path, capsys, monkeypatch):
    from mixscore import demo

    def oom(*args, **kwargs):
        raise MemoryError("Unable to allocate 7.28 TiB")

    monkeypatch.setattr(demo, "run", oom)
    pytest.importorskip("matplotlib")
    assert main(["demo", "--quick", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "mixscore demo: error: out of memory (Unable to allocate 7.28 TiB)" in err
    assert not (tmp_path / "o").exists()
