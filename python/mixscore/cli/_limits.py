"""The memory limit on what the CLI reads, checked on declared sizes before anything is loaded.

A small compressed file can declare a huge array (a .npz of zeros, a PNG of one colour), so
every input's size is computed from its header and compared with ``--max-input-gb`` first. The
size counted is the input as float64 (8 bytes a value), the precision the computation holds it
in."""

from __future__ import annotations

import math

from . import CliError

DEFAULT_MAX_INPUT_GB = 2.0
BYTES_PER_VALUE = 8
OPTION = "--max-input-gb"


def add_limit_option(parser) -> None:
    """Add ``--max-input-gb`` to a subcommand's parser."""
    parser.add_argument(
        OPTION,
        type=float,
        default=DEFAULT_MAX_INPUT_GB,
        metavar="GB",
        help=f"refuse an input that would take more than GB gigabytes (10^9 bytes) as float64, "
        f"checked on its declared size before loading (default {DEFAULT_MAX_INPUT_GB:g})",
    )


def limit_bytes(gb: float) -> int:
    """The limit in bytes; refuses a value that is not a finite number > 0."""
    if not (isinstance(gb, float | int) and math.isfinite(gb) and gb > 0):
        raise CliError(f"{OPTION} must be a finite number of gigabytes > 0, got {gb!r}")
    return int(gb * 1e9)


def _gb(n: int) -> str:
    return f"{n / 1e9:.3g} GB"


def check_values(what: str, n_values: int, limit: int) -> None:
    """Refuse ``n_values`` values (as float64) over ``limit`` bytes; ``what`` names the input
    and its declared shape."""
    need = n_values * BYTES_PER_VALUE
    if need > limit:
        raise CliError(
            f"{what} declares {n_values:,} values ({_gb(need)} as float64), over the input "
            f"limit of {_gb(limit)}; nothing was loaded. Raise {OPTION} if this is intended"
        )
