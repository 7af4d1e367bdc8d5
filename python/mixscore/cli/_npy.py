"""The declared shape and dtype of a .npy array (a file or a .npz member), read from its header
alone, so that a size can be checked before the data are loaded.

The .npy header (NumPy's format, ``numpy.lib.format``): the magic ``\\x93NUMPY``, a version,
a little-endian header length (2 bytes in version 1, 4 bytes in versions 2 and 3) and a Python
dict literal with ``descr``, ``fortran_order`` and ``shape``."""

from __future__ import annotations

import ast
import struct

import numpy as np

from . import CliError

MAGIC = b"\x93NUMPY"
MAX_HEADER = 10_000  # NumPy's own default limit on the header (``max_header_size``)
NUMERIC_KINDS = "fiub"


def read_header(fp, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) declared by the .npy header at the start of ``fp``; ``where`` names the
    input in errors. Refuses non-numeric dtypes (pickled objects included) before loading."""
    start = fp.read(8)
    if len(start) < 8 or start[:6] != MAGIC:
        raise CliError(f"cannot read {where}: not a NumPy .npy array (no .npy header)")
    major = start[6]
    if major not in (1, 2, 3):
        raise CliError(f"cannot read {where}: unknown .npy format version {major}")
    size_fmt = "<H" if major == 1 else "<I"
    raw = fp.read(struct.calcsize(size_fmt))
    if len(raw) < struct.calcsize(size_fmt):
        raise CliError(f"cannot read {where}: the .npy header is cut short")
    (length,) = struct.unpack(size_fmt, raw)
    if length > MAX_HEADER:
        raise CliError(f"cannot read {where}: its .npy header is {length} bytes, over {MAX_HEADER}")
    text = fp.read(length)
    try:
        header = ast.literal_eval(text.decode("utf8" if major == 3 else "latin1"))
        shape, descr = header["shape"], header["descr"]
        dtype = np.lib.format.descr_to_dtype(descr)
    except Exception as e:  # a malformed header: any parse error is the file's fault
        raise CliError(f"cannot read {where}: malformed .npy header ({e})") from None
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise CliError(f"cannot read {where}: malformed .npy shape {shape!r}")
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None:
        what = "Python objects (pickle), refused" if dtype.hasobject else f"dtype {dtype}"
        raise CliError(f"{where} holds {what}; expected a numeric array")
    return shape, dtype
