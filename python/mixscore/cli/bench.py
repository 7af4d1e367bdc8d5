"""``mixscore bench``: benchmark tables from the installed package (score engine, nearest,
sampler), with ratios against the NumPy reference and the peers measured in the same run."""

from __future__ import annotations

import argparse
import dataclasses
import json

from . import CliError
from ._outputs import add_force_option, check_outputs, write_atomic


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark tables: ratios against the NumPy reference "
        "and installed peers, from one run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes (a few seconds): M = 256, N = 2000, D = 16",
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=("score", "nearest", "sampler"),
        default=["score", "nearest", "sampler"],
        help="tables to run (default all)",
    )
    p.add_argument("--m", type=int, default=None, help="queries / samples (overrides)")
    p.add_argument("--n", type=int, default=None, help="training points (overrides)")
    p.add_argument("--dim", type=int, default=None, help="dimension D (overrides)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (overrides)")
    p.add_argument("--repeats", type=int, default=3, help="best of R timed runs (default 3)")
    p.add_argument("--json", metavar="OUT", default=None, help="also write the rows as JSON")
    add_force_option(p, "the --json file")
    p.set_defaults(run=run)


def run(args) -> int:
    from .. import benchmarks

    sizes = benchmarks.QUICK if args.quick else benchmarks.FULL
    overrides = {
        k: getattr(args, k) for k in ("m", "n", "dim", "steps") if getattr(args, k) is not None
    }
    for k, v in overrides.items():
        if v < (2 if k == "n" else 1):
            raise CliError(f"--{k} must be >= {2 if k == 'n' else 1}, got {v}")
    if args.repeats < 1:
        raise CliError(f"--repeats must be >= 1, got {args.repeats}")
    check_outputs({"--json": args.json}, {}, args.force)  # before the benchmark runs
    sizes = dataclasses.replace(sizes, **overrides)
    result = benchmarks.run(tuple(dict.fromkeys(args.only)), sizes, repeats=args.repeats)
    print(benchmarks.format_tables(result))
    if args.json:
        replaced = write_atomic(args.json, json.dumps(result, indent=1).encode())
        print(f"{'replaced' if replaced else 'wrote'} {args.json}")
    return 0
