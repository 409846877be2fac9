"""Command-line pieces the exporters share (torch-free, so export.tensorrt runs without PyTorch)."""

from __future__ import annotations

import os
from pathlib import Path

def check_writable(path: Path) -> None:
    """Fail before the slow work when `path` cannot be written."""
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; give the file to write")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(f"{path}: directory {path.parent} is not writable")
