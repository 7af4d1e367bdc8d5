"""``mixscore info``: version, backends, the engine's instruction set, CPU features, threads."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="version, backends, CPU features and threads",
                       description=__doc__)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..system import format_info, info

    d = info()
    print(json.dumps(d, indent=1) if args.json else format_info(d))
    return 0
