"""Stacked U-Nets (Shah, Ghosh, Davis, Goldstein, ECCV 2018).

Layout and parameter counts follow the authors' implementation (docs/model-and-facts.md section 1):
pre-activated u-net modules, a strided/dilated switch per block, and parameter names that are the
same at every output stride so that classification weights load into the segmentation model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

OUTPUT_STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class SUNetConfig:
    """One SUNet variant. `width` is N, the internal width of every u-net module."""

    width: int
    modules_per_block: tuple[int, int, int, int]
    block_widths: tuple[int, int, int, int]
    stem_width: int = 64
    levels: tuple[int, int, int, int] = (2, 2, 2, 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SUNetConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def block_atrous_rates(output_stride: int) -> tuple[list[int], list[bool]]:
    """Per block j: the atrous rate a = 2(j - o) (<= 0 means strided) and whether a pool follows."""
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
    o = {32: 3, 16: 2, 8: 1}[output_stride]
    rates = [max(2 * (j - o), 0) for j in range(4)]
    pools = [j < o for j in range(3)]
    return rates, pools


def _br_conv(
    cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """BatchNorm, ReLU, then a conv (the backbone's pre-activation unit)."""
    return nn.Sequential(
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=dilation * (kernel // 2), dilation=dilation),
    )


class EncoderLevel(nn.Sequential):
    """Strided (rate 0): 3x3 stride 2, 3x3. Dilated (rate r): 3x3 dilation r, 3x3 dilation 2r."""

    def __init__(self, width: int, rate: int) -> None:
        if rate:
            super().__init__(_br_conv(width, width, 3, dilation=rate), _br_conv(width, width, 3, dilation=2 * rate))
        else:
            super().__init__(_br_conv(width, width, 3, stride=2), _br_conv(width, width, 3))


class DecoderLevel(nn.Module):
    """BR, 3x3 transposed conv (x2, or stride 1 dilation 2r), BR, 3x3 conv (dilation r)."""

    def __init__(self, cin: int, width: int, rate: int) -> None:
        super().__init__()
        self.strided = rate == 0
        if self.strided:
            # Always exactly 2x; forward() crops to the skip tensor so any input size works and
            # ONNX export keeps dynamic H/W (no output_size taken from a tensor).
            up = nn.ConvTranspose2d(cin, width, 3, stride=2, padding=1, output_padding=1)
        else:
            up = nn.ConvTranspose2d(cin, width, 3, stride=1, padding=2 * rate, dilation=2 * rate)
        self.up = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), up)
        self.conv = _br_conv(width, width, 3, dilation=max(rate, 1))

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if self.strided:
            x = x[:, :, : like.shape[2], : like.shape[3]]
        return self.conv(x)


class UNetModule(nn.Module):
    """A u-net module M -> W with internal width N and `levels` encoder/decoder levels.

    The first module of a block (M != W) pre-activates its input once and adds a 1x1 projection
    of it; later modules add their raw input.
    """

    def __init__(self, cin: int, width: int, cout: int, levels: int, rate: int) -> None:
        super().__init__()
        self.projects = cin != cout
        if self.projects:
            self.input_act = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
            self.bottleneck_in = nn.Conv2d(cin, width, 1)
            self.shortcut = nn.Conv2d(cin, cout, 1)
        else:
            self.bottleneck_in = _br_conv(cin, width, 1)
        self.encoders = nn.ModuleList(EncoderLevel(width, rate * 2**i) for i in range(levels))
        self.decoders = nn.ModuleList(
            DecoderLevel(width if i == levels - 1 else 2 * width, width, rate * 2**i) for i in range(levels)
        )
        self.bottleneck_out = _br_conv(width, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.projects:
            x = self.input_act(x)
        h = self.bottleneck_in(x)
        level_inputs = [h]
        for encoder in self.encoders:
            level_inputs.append(encoder(level_inputs[-1]))
        out = level_inputs.pop()
        for i in reversed(range(len(self.decoders))):
            out = self.decoders[i](out, like=level_inputs[i])
            if i:
                out = torch.cat([out, level_inputs[i]], dim=1)
        out = self.bottleneck_out(out)
        return out + (self.shortcut(x) if self.projects else x)


class ResidualStem(nn.Module):
    """7x7 stride-2 conv, then a pre-activated residual block with stride 2 (no max-pool)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 7, stride=2, padding=3)
        self.act = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), _br_conv(2 * width, 2 * width, 3)
        )
        self.shortcut = nn.Conv2d(width, 2 * width, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.conv(x))
        return self.body(a) + self.shortcut(a)


class SUNetBackbone(nn.Module):
    """Stem, four blocks of u-net modules with 2x2 average pools between them, final BatchNorm.

    The output is the pre-ReLU feature map at `output_stride` (the heads apply the ReLU).
    """

    def __init__(self, config: SUNetConfig, output_stride: int = 32) -> None:
        super().__init__()
        self.config = config
        self.output_stride = output_stride
        rates, pools = block_atrous_rates(output_stride)
        self.stem = ResidualStem(config.stem_width)
        channels = 2 * config.stem_width
        self.blocks = nn.ModuleList()
        for count, cout, levels, rate in zip(
            config.modules_per_block, config.block_widths, config.levels, rates
        ):
            modules = []
            for _ in range(count):
                modules.append(UNetModule(channels, config.width, cout, levels, rate))
                channels = cout
            self.blocks.append(nn.Sequential(*modules))
        self.pools = nn.ModuleList(nn.AvgPool2d(2) if keep else nn.Identity() for keep in pools)
        self.final_bn = nn.BatchNorm2d(channels)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.pools):
                x = self.pools[i](x)
        return self.final_bn(x)


class SUNetClassifier(nn.Module):
    """The ImageNet classifier: backbone, ReLU, global average pool, linear."""

    def __init__(self, config: SUNetConfig, num_classes: int = 1000) -> None:
        super().__init__()
        self.backbone = SUNetBackbone(config, output_stride=32)
        self.fc = nn.Linear(self.backbone.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = F.relu(self.backbone(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(features, 1), 1))


def plain_head(in_channels: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, num_classes, 1))


def degridding_head(in_channels: int, num_classes: int, width: int = 512) -> nn.Sequential:
    """Paper section 5.3: removes gridding artefacts of dilated convs (post-activation)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=2, dilation=2),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, num_classes, 1),
    )


HEADS = {"plain": plain_head, "degrid": degridding_head}


class DilatedSUNet(nn.Module):
    """Segmentation model: dilated backbone, ReLU, head, bilinear upsampling to the input size."""

    def __init__(
        self, config: SUNetConfig, num_classes: int = 21, output_stride: int = 16, head: str = "plain"
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {sorted(HEADS)}, got {head!r}")
        self.backbone = SUNetBackbone(config, output_stride=output_stride)
        self.head = HEADS[head](self.backbone.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(F.relu(self.backbone(x)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


SUNET_CONFIGS: dict[str, SUNetConfig] = {
    "sunet64": SUNetConfig(64, (2, 4, 4, 1), (256, 512, 768, 1024)),
    "sunet128": SUNetConfig(128, (2, 4, 4, 1), (512, 1024, 1536, 2048)),
    "sunet7_128": SUNetConfig(128, (2, 7, 7, 1), (512, 1280, 2048, 2304)),
    # Small variants for tests and the CPU demo; same structure, fewer channels and modules.
    "sunet_tiny": SUNetConfig(16, (1, 1, 1, 1), (32, 48, 64, 96), stem_width=16),
    "sunet_small": SUNetConfig(32, (1, 2, 2, 1), (64, 128, 192, 256), stem_width=32),
}


def resolve_config(arch: str | SUNetConfig, **overrides) -> SUNetConfig:
    if isinstance(arch, SUNetConfig):
        return replace(arch, **overrides)
    if arch not in SUNET_CONFIGS:
        raise ValueError(f"unknown SUNet architecture {arch!r}; known: {', '.join(SUNET_CONFIGS)}")
    return replace(SUNET_CONFIGS[arch], **overrides)
