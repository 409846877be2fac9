"""Parameters and FLOPs measured with torch.utils.flop_counter (never hand-typed).

FlopCounterMode counts 2 FLOPs per multiply-accumulate of convolutions, transposed convolutions
and matrix products; BatchNorm, ReLU, pooling and resizing are not counted. Models run on the
meta device: shapes only, no memory, no arithmetic, so SUNet-7-128 at 512x512 takes a moment.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sunet_deploy.models import ModelSpec, build_model, count_parameters

BASELINES = ("sunet64", "sunet128", "sunet7_128", "resnet101")


def count_flops(model: nn.Module, shape: tuple[int, ...], device: str | torch.device = "cpu") -> int:
    """FLOPs of one forward pass of `model` on an input of `shape`."""
    x = torch.empty(shape, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def model_table(archs: tuple[str, ...] = BASELINES, size: tuple[int, int] = (512, 512), output_stride: int = 16,
                num_classes: int = 21) -> list[dict]:  # fmt: skip
    """Params and GFLOPs of each segmentation model at `size`, batch 1, measured on the meta device."""
    rows = []
    for arch in archs:
        spec = ModelSpec(arch, num_classes=num_classes, output_stride=output_stride)
        with torch.device("meta"):
            params = count_parameters(build_model(spec))
        rows.append({"model": arch, "output_stride": output_stride, "size": list(size), "num_classes": num_classes,
                     "params": params, "gflops": spec_gflops(spec, (1, 3, *size))})  # fmt: skip
    return rows


def spec_gflops(spec: ModelSpec, shape: tuple[int, int, int, int]) -> float:
    """GFLOPs of one forward pass of the model `spec` describes on an input of `shape` (meta device)."""
    with torch.device("meta"):
        model = build_model(spec).eval()
    return count_flops(model, shape, device="meta") / 1e9
