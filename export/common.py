"""Command-line pieces the exporters share (torch-free, so export.tensorrt runs without PyTorch)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

PRECISION_KEY = "sunet_deploy.precision"
"""ONNX metadata_props key: "fp32" or "fp16", the precision of the exported graph."""


def parse_dims(text: str, count: int, example: str) -> tuple[int, ...]:
    """'512x512' -> (512, 512): `count` positive integers joined by 'x' (an argparse type)."""
    parts = text.lower().split("x")
    if len(parts) != count or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected {count} positive integers such as {example}, got {text!r}")
    return tuple(int(p) for p in parts)


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' such as '512x512' (an argparse type)."""
    return parse_dims(text, 2, "512x512")


def check_writable(path: Path) -> None:
    """Fail before the slow work when `path` cannot be written."""
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; give the file to write")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(f"{path}: directory {path.parent} is not writable")
