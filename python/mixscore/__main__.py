"""``python -m mixscore``: the command line interface (see mixscore.cli)."""

from .cli import main

raise SystemExit(main())
