"""``mixscore demo``: sample the digits with the exact score, measure memorization against the
end time, write a figure, a JSON report and a Markdown summary."""

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
    p.add_argument("--data", default="digits", help="data set name or .npy/.npz path "
                   "(default: digits)")
    p.add_argument("--quick", action="store_true", help="a small, fast run (tests, CI)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_force_option(p, "report files in --out")
    p.set_defaults(run=run)


def run(args) -> int:
    from .. import demo
    from ..plotting import require_matplotlib

    settings = demo.DemoSettings.make(n=args.n, seed=args.seed, quick=args.quick, data=args.data)
    require_matplotlib()
    out = Path(args.out)
    demo.check_output_folder(out, args.force)
    report, finals, X, shape = demo.run(settings, progress=False if args.no_progress else None)
    files = demo.write(report, finals, X, shape, out, args.force)
    print(demo.table(report))
    print()
    for kind, path in files.items():
        print(f"{kind:>8}: {path}")
    return 0
