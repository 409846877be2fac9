"""The run folder: a new run never replaces an earlier one by accident.

A folder holding any of RUN_FILES holds a run. `--resume` continues it, `--overwrite` replaces it;
anything else is refused before a file is written or a dataset read.
"""

from __future__ import annotations

from pathlib import Path

from .config import TrainConfig
from .state import BEST_FILE, STATE_FILE

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
CURVES_FILE = "curves.png"
RUN_FILES = (BEST_FILE, STATE_FILE, METRICS_FILE, CONFIG_FILE)


class RunExists(ValueError):
    """The out-dir already holds a run, and the config neither resumes nor overwrites it."""


def check_out_dir(config: TrainConfig) -> None:
    """Refuse an out-dir that holds a run unless --resume or --overwrite is set."""
    if config.resume or config.overwrite:
        return
    found = [name for name in RUN_FILES if (Path(config.out_dir) / name).exists()]
    if found:
        raise RunExists(f"{config.out_dir} already holds a run ({', '.join(found)}): continue it with --resume, "
                        "train into a new --out-dir, or replace it with --overwrite")  # fmt: skip


def remove_earlier_run(out: Path) -> None:
    """--overwrite: delete what an earlier run wrote, so that nothing of it mixes into the new run."""
    for name in (*RUN_FILES, CURVES_FILE):
        (out / name).unlink(missing_ok=True)
