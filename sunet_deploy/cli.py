"""Argument types shared by every command-line tool (torch-free)."""

from __future__ import annotations

import argparse


def parse_dims(text: str, count: int, example: str) -> tuple[int, ...]:
    """'512x512' -> (512, 512): `count` positive integers joined by 'x' (an argparse type)."""
    parts = text.lower().split("x")
    if len(parts) != count or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected {count} positive integers such as {example}, got {text!r}")
    return tuple(int(p) for p in parts)


def parse_size(text: str, square: bool = False) -> tuple[int, int]:
    """'HxW' such as '512x512' (an argparse type); with `square` also 'SIZE' for SIZExSIZE."""
    dims = f"{text}x{text}" if square and text.isdigit() else text
    try:
        return parse_dims(dims, 2, "512x512")
    except argparse.ArgumentTypeError:
        if not square:
            raise
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW (positive integers, e.g. 512 or 384x512), got {text!r}") from None


def parse_square_size(text: str) -> tuple[int, int]:
    """'SIZE' (a square) or 'HxW' (an argparse type: parse_size with `square`)."""
    return parse_size(text, square=True)


EXIT_OK = 0
EXIT_FAILED = 1
"""The command ran but a check failed (parity outside tolerance, verification, a diverged run,
some inputs skipped)."""
EXIT_USAGE = 2
"""Bad usage or bad input: wrong flags, missing or unreadable files, refused artifacts."""
EXIT_STATUS_HELP = "exit status: 0 ok, 1 a check failed (details on stderr), 2 bad usage or input"
"""The epilog of every command's --help."""
