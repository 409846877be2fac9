"""Output heads wrapped around a model before export."""

from __future__ import annotations

import torch
from torch import nn


class LabelsHead(nn.Module):
    """The model with its argmax built in: (N, H, W) int64 class indices instead of logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).argmax(1)
