"""python -m train [--config demo] [--flags]: see `python -m train --help` and docs/training.md."""

from __future__ import annotations

import sys

from sunet_deploy.checkpoint import CheckpointError
from sunet_deploy.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE

from .config import parse_config
from .loop import Diverged, run


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(argv)
        run(config)
    except Diverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
