"""Pieces every exporter shares: the in-graph argmax head and shape arguments."""

from __future__ import annotations

import argparse

import torch
from torch import nn


class LabelsHead(nn.Module):
    """The model with its argmax built in: (N, H, W) int64 class indices instead of logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).argmax(1)


def parse_dims(text: str, count: int, example: str) -> tuple[int, ...]:
    """'512x512' -> (512, 512): `count` positive integers joined by 'x' (an argparse type)."""
    parts = text.lower().split("x")
    if len(parts) != count or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected {count} positive integers such as {example}, got {text!r}")
    return tuple(int(p) for p in parts)


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' such as '512x512' (an argparse type)."""
    return parse_dims(text, 2, "512x512")
