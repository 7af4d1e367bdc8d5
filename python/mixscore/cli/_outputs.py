"""The CLI's output files: checked before any work, written atomically with the user's usual
permissions.

Rules: an output never replaces an input, two outputs never share a path, and an existing
file is replaced only with ``--force`` (and the CLI says "replaced" rather than "wrote")."""

from __future__ import annotations

import os
import secrets

from . import CliError


def add_force_option(parser, what: str = "output files") -> None:
    """Add ``--force`` to a subcommand's parser."""
    parser.add_argument(
        "--force", action="store_true", help=f"replace existing {what} (default: refuse)"
    )


def _same(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(outputs: dict, inputs: dict, force: bool) -> None:
    """Refuse output paths that cannot or must not be written, before any work.

    ``outputs`` and ``inputs`` map an option (``"--json"``) to a path or None (not given)."""
    given = [(opt, p) for opt, p in outputs.items() if p]
    for i, (option, path) in enumerate(given):
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise CliError(f"{option} {path!r}: the folder {parent!r} does not exist")
        if os.path.isdir(path):
            raise CliError(f"{option} {path!r} is a folder; give a file name")
        for in_option, in_path in inputs.items():
            if in_path and _same(path, in_path):
                raise CliError(
                    f"{option} {path!r} is the {in_option} input; choose another output file"
                )
        for other, other_path in given[:i]:
            if _same(path, other_path):
                raise CliError(
                    f"{other} and {option} both name {path!r}; give each output its own file"
                )
        if os.path.lexists(path) and not force:
            raise CliError(
                f"{option} {path!r} exists; add --force to replace it (nothing was written)"
            )


def write_atomic(path: str, data: bytes) -> bool:
    """Write ``data`` to ``path`` through a temporary file in the same folder, replaced in one
    step; the file gets the permissions of the user's umask, like any new file. Returns
    whether an existing file was replaced."""
    parent = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(parent, f".mixscore-{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        existed = os.path.lexists(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return existed
