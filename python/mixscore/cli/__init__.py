"""Command line interface: ``mixscore COMMAND ...`` (also ``python -m mixscore``).

Every module of this package that defines ``add_parser(subparsers)`` is a subcommand: it adds
its parser and sets ``run`` (a function of the parsed arguments returning an exit code) as a
default. Adding ``cli/demo.py`` or ``cli/info.py`` adds ``mixscore demo`` / ``mixscore info``;
nothing here needs to change. Modules whose names start with "_" are helpers.

Errors in the user's input are printed as ``mixscore COMMAND: error: ...`` with exit code 2,
before anything is written.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from .. import __version__


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def _commands():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "add_parser"):
            yield module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixscore",
        description="Exact scores of the empirical distribution, nearest training examples and "
        "memorization metrics.",
    )
    parser.add_argument("--version", action="version", version=f"mixscore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _commands():
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args) or 0)
    except (CliError, ValueError, TypeError, OSError, ImportError) as e:
        print(f"mixscore {args.command}: error: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:
        print(
            f"mixscore {args.command}: error: out of memory ({e or 'MemoryError'}); the "
            f"inputs or settings are too large for this machine",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"mixscore {args.command}: interrupted", file=sys.stderr)
        return 130
