"""python -m train [--config demo] [--flags]: see `python -m train --help` and docs/training.md."""

from __future__ import annotations

import sys

from sunet_deploy.checkpoint import CheckpointError
from sunet_deploy.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE

from .config import parse_config
from .loop import Diverged, run
from .processes import Interrupted, signals_interrupt, tie_to_launcher


def main(argv: list[str] | None = None) -> int:
    tie_to_launcher()
    with signals_interrupt():
        try:
            config = parse_config(argv)
            run(config)
        except Interrupted as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_status
        except Diverged as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except (CheckpointError, ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
