"""python -m train [--config demo] [--flags]: see `python -m train --help` and docs/training.md."""

from __future__ import annotations

import sys

from sunet_deploy.checkpoint import CheckpointError

from .config import parse_config
from .loop import Diverged, run

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(argv)
        run(config)
    except Diverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
