"""Output heads wrapped around a model before export."""

from __future__ import annotations

import torch
from torch import nn

from sunet_deploy.artifact import labels_dtype


class LabelsHead(nn.Module):
    """The model with its argmax built in: (N, H, W) class indices instead of logits, uint8 (one byte per
    pixel, 8 times less data than int64) for up to 256 classes, int64 beyond (sunet_deploy.artifact.labels_dtype).

    The indices go to uint8 through float32: TensorRT converts to and from UINT8 only from FLOAT or HALF
    (NvInferRuntimeBase.h, DataType::kUINT8: "kUINT8 conversions are only supported for {kFLOAT, kHALF}"),
    so a direct INT64 -> UINT8 Cast would not build there; indices up to 255 are exact in either.
    """

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.uint8 = labels_dtype(num_classes) == "uint8"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        labels = self.model(x).argmax(1)
        return labels.to(torch.float32).to(torch.uint8) if self.uint8 else labels
