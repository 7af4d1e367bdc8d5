"""Folders of PNG images, read without loss at their stored bit depth.

Each file's IHDR chunk (PNG specification, section 11.2.2: width, height, bit depth, colour
type) is read first, so sizes, shapes and depths are checked before any image is decoded.
Values are the stored samples, never rescaled to [0, 1]:

- 8-bit gray, gray+alpha, RGB, RGBA and palette images (palette expanded to RGB, or RGBA
  when the palette has transparency): integers 0..255 (uint8);
- 1-, 2- and 4-bit gray: Pillow's exact scaling onto 0..255 (PNG section 12.4: v * 255 /
  (2^depth - 1)), the same range as 8-bit;
- 16-bit gray: integers 0..65535 (uint16), as stored;
- 16-bit RGB, RGBA and gray+alpha: refused, since Pillow reads them as 8 bits a sample.

All images of a folder must share size, channels and range; otherwise nothing is read.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

from . import CliError
from ._limits import check_values

SIGNATURE = b"\x89PNG\r\n\x1a\n"
SUFFIXES = (".png",)
COLOUR_TYPES = {
    0: ("gray", 1),
    2: ("RGB", 3),
    3: ("palette", 3),
    4: ("gray+alpha", 2),
    6: ("RGBA", 4),
}
PILLOW_MODE = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}  # 8-bit (and lower) colour types


@dataclass(frozen=True)
class PngInfo:
    """What an IHDR chunk declares."""

    name: str
    width: int
    height: int
    depth: int
    colour: int

    @property
    def channels(self) -> int:
        return COLOUR_TYPES[self.colour][1]

    @property
    def max_value(self) -> int:
        return 65535 if self.depth == 16 else 255

    def describe(self) -> str:
        kind = COLOUR_TYPES[self.colour][0]
        return f"{self.height}x{self.width} {self.depth}-bit {kind}"


def read_ihdr(path: str, name: str, where: str) -> PngInfo:
    """The IHDR of one PNG file, without decoding it."""
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[:8] != SIGNATURE or head[12:16] != b"IHDR":
        raise CliError(f"cannot read {where} image {name!r}: not a PNG file")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    if colour not in COLOUR_TYPES or depth not in (1, 2, 4, 8, 16):
        raise CliError(
            f"cannot read {where} image {name!r}: invalid PNG colour type {colour} / bit "
            f"depth {depth}"
        )
    info = PngInfo(name, width, height, depth, colour)
    if depth == 16 and colour != 0:
        raise CliError(
            f"cannot read {where} image {name!r} ({info.describe()}) without loss: Pillow "
            f"reads 16-bit colour PNGs as 8 bits a sample. Convert the images to a .npy "
            f"array (uint16) or to 16-bit gray PNGs"
        )
    return info


def _check_alike(infos: list[PngInfo], where: str) -> None:
    first = infos[0]
    for info in infos[1:]:
        if (info.height, info.width, info.channels) != (first.height, first.width, first.channels):
            raise CliError(
                f"{where}: images have different shapes: {first.name!r} is "
                f"{first.describe()}, {info.name!r} is {info.describe()}"
            )
        if info.max_value != first.max_value:
            raise CliError(
                f"{where}: images have different value ranges: {first.name!r} is "
                f"{first.describe()} (0..{first.max_value}), {info.name!r} is "
                f"{info.describe()} (0..{info.max_value}); convert them to one bit depth"
            )


def _decode(Image, path: str, info: PngInfo, where: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if info.depth == 16:
                arr = np.asarray(im)
            elif info.colour == 3:
                arr = np.asarray(im.convert("RGBA" if "transparency" in im.info else "RGB"))
            else:
                arr = np.asarray(im.convert(PILLOW_MODE[info.colour]))
    except Exception as e:  # any decoding failure is this file's fault
        raise CliError(
            f"cannot read {where} image {info.name!r}: {type(e).__name__}: {e}"
        ) from None
    dtype = np.uint16 if info.depth == 16 else np.uint8
    if arr.dtype.kind not in "ui" or arr.shape[:2] != (info.height, info.width):
        raise CliError(
            f"cannot read {where} image {info.name!r} ({info.describe()}) without loss: "
            f"Pillow gave shape {arr.shape} and dtype {arr.dtype}"
        )
    return arr.astype(dtype, copy=False)


def load_folder(path: str, where: str, limit: int) -> tuple[np.ndarray, str]:
    """(images (M, H, W[, C]) as uint8 or uint16, a sentence saying what was read and in which
    range). Sizes are checked against ``limit`` bytes (as float64) before decoding."""
    names = sorted(f for f in os.listdir(path) if f.lower().endswith(SUFFIXES))
    if not names:
        raise CliError(f"cannot read {where}: the folder holds no .png images")
    infos = [read_ihdr(os.path.join(path, n), n, where) for n in names]
    _check_alike(infos, where)
    first = infos[0]
    n_values = (
        len(infos) * first.height * first.width * (4 if first.colour == 3 else first.channels)
    )
    check_values(f"{where} ({len(infos)} PNG images of {first.describe()})", n_values, limit)
    try:
        from PIL import Image
    except ImportError:
        raise CliError(
            f"reading the image folder {where} needs Pillow: pip install pillow"
        ) from None
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # sizes were checked above against the user's limit
    try:
        images = [_decode(Image, os.path.join(path, i.name), i, where) for i in infos]
    finally:
        Image.MAX_IMAGE_PIXELS = old
    shapes = {a.shape for a in images}
    if len(shapes) != 1:
        raise CliError(f"{where}: images decode to different shapes {sorted(shapes)}")
    depths = sorted({i.depth for i in infos})
    channels = images[0].shape[2] if images[0].ndim == 3 else 1
    note = (
        f"{len(images)} PNG images ({first.height}x{first.width}, {channels} channel(s), "
        f"{'/'.join(map(str, depths))}-bit), read as stored integers 0..{first.max_value}"
    )
    if depths[0] < 8:
        note += " (depths below 8 bits scaled exactly onto 0..255)"
    return np.stack(images), note
