"""``mixscore memorization``: exact d1/d2 memorization metrics of samples against a training set.

    mixscore memorization --samples S.npy --train X.npy [--k 2] [--ratio 0.3333] [--tau T]
                          [--scale data|pixels255|sqrt_dim] [--samples-range LO HI]
                          [--json OUT.json] [--plot OUT.png]

Inputs: .npy, .npz (``file.npz:key`` when it holds several arrays) or a folder of .png images
(needs Pillow). Samples and training data whose value ranges differ by more than 10x (0..255
PNGs against data in [-1, 1]) are refused: map them with --samples-range (or --no-scale-check).
Prints the summary table; --json writes the full report (per-sample values
included), --plot the d1/d2 histogram (plus samples next to their nearest training images when
the rows are images). Every input is checked, and the results computed, before any file is
written: on error nothing is written.
"""

from __future__ import annotations

import io
import os
import tempfile

from . import CliError
from ._io import load_array, load_points

PLOT_FORMATS = (".png", ".pdf", ".svg")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "memorization", help="memorization metrics (d1/d2 ratio rule, absolute rule, copies)",
        description="Exact d1/d2 memorization metrics of generated samples against a training "
                    "set: ratio rule, absolute rule, bootstrap CIs, copy histogram.")
    p.add_argument("--samples", required=True, metavar="PATH",
                   help="generated samples: .npy, .npz[:key] or a folder of .png images")
    p.add_argument("--train", required=True, metavar="PATH", help="training set (same formats)")
    p.add_argument("--k", type=int, default=2, help="neighbours per sample (>= 2, default 2)")
    p.add_argument("--ratio", type=float, default=1 / 3,
                   help="ratio rule: memorized if d1/d2 < RATIO, in (0, 1) (default 1/3)")
    p.add_argument("--tau", type=float, default=None,
                   help="absolute rule: memorized if d1 < TAU (in --scale units)")
    p.add_argument("--scale", choices=("data", "pixels255", "sqrt_dim"), default="data",
                   help="distance units: data, pixels255 (data range mapped to 0..255) or "
                        "sqrt_dim (divided by sqrt(D)); default data")
    p.add_argument("--data-range", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="data range for --scale pixels255 (default: inferred from the train set)")
    p.add_argument("--samples-range", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="value range of the samples, mapped linearly onto the training data's "
                        "range (--data-range or inferred), e.g. 0 255 for PNG samples of data "
                        "in [-1, 1]")
    p.add_argument("--no-scale-check", action="store_true",
                   help="compare samples and training data even when their value ranges "
                        "differ by more than 10x (refused by default)")
    p.add_argument("--interval", choices=("wilson", "bootstrap"), default="wilson",
                   help="confidence interval of the fractions (default wilson; bootstrap "
                        "collapses to a point at 0%% and 100%%)")
    p.add_argument("--weights", metavar="PATH", default=None,
                   help="expected copy distribution (.npy of N positive weights); default uniform")
    p.add_argument("--copy-rule", choices=("ratio", "tau", "all"), default="ratio",
                   help="which samples enter the copy histogram (default ratio)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--confidence", type=float, default=0.95, help="CI level (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--json", metavar="OUT", default=None, help="write the report as JSON")
    p.add_argument("--plot", metavar="OUT", default=None,
                   help="write a figure (.png, .pdf or .svg; needs matplotlib)")
    p.add_argument("--image-shape", type=int, nargs="+", metavar="N", default=None,
                   help="H W [C] of image rows, for --plot (default: from the input files)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all)")
    p.add_argument("--backend", choices=("auto", "cpu", "numpy"), default="auto")
    p.set_defaults(run=run)


def _check_output(path: str, option: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CliError(f"{option} {path!r}: the folder {parent!r} does not exist")
    if os.path.isdir(path):
        raise CliError(f"{option} {path!r} is a folder; give a file name")


def _write_atomic(path: str, data: bytes) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=".mixscore-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def run(args) -> int:
    from ..memorization import memorization

    # 1. everything that can fail cheaply, before any work
    if args.json:
        _check_output(args.json, "--json")
    if args.plot:
        _check_output(args.plot, "--plot")
        ext = os.path.splitext(args.plot)[1].lower()
        if ext not in PLOT_FORMATS:
            raise CliError(f"--plot {args.plot!r}: the file name must end in one of "
                           f"{', '.join(PLOT_FORMATS)}")
        from ..plotting import require_matplotlib

        require_matplotlib()
    samples, s_shape = load_points(args.samples, "--samples")
    train, t_shape = load_points(args.train, "--train")
    weights = load_array(args.weights, "--weights") if args.weights else None

    # 2. the computation (raises ValueError on bad values)
    report = memorization(samples, train, k=args.k, ratio=args.ratio, tau=args.tau,
                          scale=args.scale, data_range=args.data_range, weights=weights,
                          copy_rule=args.copy_rule, n_boot=args.n_boot,
                          confidence=args.confidence, seed=args.seed, backend=args.backend,
                          num_threads=args.threads, samples_range=args.samples_range,
                          check_scale=not args.no_scale_check, interval=args.interval,
                          scale_option="--samples-range {lo} {hi}",
                          scale_off_option="--no-scale-check")
    report.inputs["samples"]["path"] = args.samples
    report.inputs["train"]["path"] = args.train

    # 3. render outputs in memory, then write them
    outputs = []
    if args.json:
        outputs.append((args.json, (report.to_json() + "\n").encode()))
    if args.plot:
        from ..plotting import memorization_figure

        image_shape = args.image_shape or s_shape or t_shape
        fig = memorization_figure(report, samples, train, image_shape=image_shape)
        buf = io.BytesIO()
        fig.savefig(buf, format=ext[1:], dpi=120)
        import matplotlib.pyplot as plt

        plt.close(fig)
        outputs.append((args.plot, buf.getvalue()))
    for path, data in outputs:
        _write_atomic(path, data)
    print(report.summary())
    for path, _ in outputs:
        print(f"wrote {path}")
    return 0
