"""``mixscore reproduce``: run one experiment of the four papers (``--list`` shows them); writes
its figures (PNG) and a JSON of every number into --out and prints a summary table."""

from __future__ import annotations

import argparse
import json

from ._outputs import add_force_option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="reproduce a figure or table of the papers (--list)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", help="experiment name (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--quick", action="store_true", help="reduced size (what the tests run)")
    p.add_argument("--out", default=None, help="output folder (default: mixscore-reproduce/NAME)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter (VALUE read as JSON, e.g. --set n=200 --set "
        "'c_values=[0.001,0.1]'); repeatable",
    )
    add_force_option(p, "result files in --out")
    p.set_defaults(run=run)


def _overrides(items) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run(args) -> int:
    from .. import reproduce as rp
    from ..reproduce._common import JSON_NAME, check_folder, output_names

    if args.list:
        for e in rp.EXPERIMENTS.values():
            print(f"{e.name:<24} {e.paper}: {e.title}")
        return 0
    if args.name is None:
        raise ValueError("give an experiment NAME or --list")
    exp = rp.get(args.name)
    overrides = _overrides(args.set)
    exp.params(args.quick, overrides)  # unknown parameters fail before any work
    out = args.out or f"mixscore-reproduce/{exp.name}"
    check_folder(out, [JSON_NAME], args.force)  # before the work; the figures after
    outcome = exp.execute(quick=args.quick, seed=args.seed, overrides=overrides)
    check_folder(out, output_names(outcome), args.force)
    files = rp.write(outcome, out, force=args.force)
    print(outcome.summary())
    print()
    for kind, path in files.items():
        print(f"{kind:>12}: {path}")
    if "json" in files and len(files) == 1:
        print("figures: not written (matplotlib is missing: pip install 'mixscore[plot]')")
    return 0
