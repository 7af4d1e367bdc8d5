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
written: on error nothing is written. Inputs over --max-input-gb are refused from their declared
size; PNG images are read at their stored bit depth (the summary says which range). Outputs never
replace an input or each other; existing files are replaced only with --force.
"""

from __future__ import annotations

import io
import json
import math
import os
import re

from .._validation import check_image_shapes
from . import CliError
from ._io import input_path, load_array, load_points
from ._limits import add_limit_option, limit_bytes
from ._outputs import add_force_option, check_outputs, write_atomic

PLOT_FORMATS = (".png", ".pdf", ".svg")
# memorization()'s argument names in its errors, as this command's options (longest first)
_OPTIONS = {"data_range=(lo, hi)": "--data-range LO HI", "copy_rule": "--copy-rule",
            "n_boot": "--n-boot", "samples_range": "--samples-range", "data_range": "--data-range",
            "num_threads": "--threads", "ratio threshold": "--ratio", "seed must": "--seed must",
            "scale='pixels255'": "--scale pixels255"}
_OPTION_NAMES = re.compile("|".join(re.escape(k) for k in sorted(_OPTIONS, key=len, reverse=True)))


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "memorization", help="memorization metrics (d1/d2 ratio rule, absolute rule, copies)",
        description="Exact d1/d2 memorization metrics of generated samples against a training "
                    "set: ratio rule, absolute rule, Wilson or bootstrap CIs, copy histogram.")
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
    add_limit_option(p)
    add_force_option(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ..memorization import memorization

    # 1. everything that can fail cheaply, before any work
    limit = limit_bytes(args.max_input_gb)
    inputs = {o: args_path and input_path(args_path) for o, args_path in
              (("--samples", args.samples), ("--train", args.train), ("--weights", args.weights))}
    check_outputs({"--json": args.json, "--plot": args.plot}, inputs, args.force)
    if args.plot:
        ext = os.path.splitext(args.plot)[1].lower()
        if ext not in PLOT_FORMATS:
            raise CliError(f"--plot {args.plot!r}: the file name must end in one of "
                           f"{', '.join(PLOT_FORMATS)}")
        from ..plotting import require_matplotlib

        require_matplotlib()
    samples, s_shape, s_note = load_points(args.samples, "--samples", limit)
    train, t_shape, t_note = load_points(args.train, "--train", limit)
    try:
        check_image_shapes(s_shape, t_shape, "--samples", "--train")
    except ValueError as e:
        raise CliError(str(e)) from None
    weights = load_array(args.weights, "--weights", limit) if args.weights else None
    notes = {o: n for o, n in (("--samples", s_note), ("--train", t_note)) if n}

    if args.image_shape and (len(args.image_shape) not in (2, 3)
                             or math.prod(args.image_shape) != samples.shape[1]):
        raise CliError(f"--image-shape {' '.join(map(str, args.image_shape))}: give H W or "
                       f"H W C with H * W * C = {samples.shape[1]} (the values per row)")

    # 2. the computation (raises ValueError on bad values, named as the options here)
    try:
        report = memorization(
            samples, train, k=args.k, ratio=args.ratio, tau=args.tau, scale=args.scale,
            data_range=args.data_range, weights=weights, copy_rule=args.copy_rule,
            n_boot=args.n_boot, confidence=args.confidence, seed=args.seed,
            backend=args.backend, num_threads=args.threads, samples_range=args.samples_range,
            check_scale=not args.no_scale_check, interval=args.interval,
            scale_option="--samples-range {lo} {hi}", scale_off_option="--no-scale-check")
    except (ValueError, TypeError) as e:
        raise CliError(_OPTION_NAMES.sub(lambda m: _OPTIONS[m.group(0)], str(e))) from None
    report.inputs["samples"]["path"] = args.samples
    report.inputs["train"]["path"] = args.train
    report.inputs.update(notes)  # how each file was read, under its option's name

    # 3. render outputs in memory, then write them
    outputs = []
    if args.json:
        text = json.dumps(report.to_dict(), indent=1, allow_nan=False)
        outputs.append((args.json, (text + "\n").encode()))
    if args.plot:
        from ..plotting import memorization_figure

        image_shape = args.image_shape or s_shape or t_shape
        fig = memorization_figure(report, samples, train, image_shape=image_shape)
        buf = io.BytesIO()
        fig.savefig(buf, format=ext[1:], dpi=120)
        import matplotlib.pyplot as plt

        plt.close(fig)
        outputs.append((args.plot, buf.getvalue()))
    replaced = [write_atomic(path, data) for path, data in outputs]
    for option, note in notes.items():
        print(f"{option}: {note}")
    print(report.summary())
    for (path, _), old in zip(outputs, replaced, strict=True):
        print(f"{'replaced' if old else 'wrote'} {path}")
    return 0
