"""``mixscore demo``: sample the digits (or another data set) with the exact score, measure
memorization against the end time, write a JSON report, a Markdown summary and, with
matplotlib installed, a figure."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._outputs import add_force_option


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="the main job on the bundled digits: sample, measure "
                       "memorization against t_end, plot",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="mixscore-demo", help="output folder (default: %(default)s)")
    p.add_argument("--n", type=int, default=None, help="number of samples (default 500; "
                   "64 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default="digits", help="data set name or .npy/.npz[:key] path "
                   "(default: digits)")
    p.add_argument("--quick", action="store_true", help="a small, fast run (tests, CI)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plot", action="store_true", help="write report.json and summary.md "
                   "only (the figure needs matplotlib: pip install 'mixscore[plot]')")
    add_force_option(p, "report files in --out")
    p.set_defaults(run=run)


def run(args) -> int:
    from .. import demo

    settings = demo.DemoSettings.make(n=args.n, seed=args.seed, quick=args.quick, data=args.data)
    out = Path(args.out)
    demo.check_output_folder(out, args.force)
    report, finals, X, shape = demo.run(settings, progress=False if args.no_progress else None)
    files = demo.write(report, finals, X, shape, out, args.force, plot=not args.no_plot)
    print(demo.settings_text(report))
    print()
    print(demo.table(report))
    print()
    note = files.pop("figure_note", None)
    for kind, path in files.items():
        if path is not None:
            print(f"{kind:>8}: {path}")
    if note is not None:
        print(f"{'figure':>8}: {note}")
    return 0
