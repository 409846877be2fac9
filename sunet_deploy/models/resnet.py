"""Dilated ResNet-101 segmentation baseline, the network the SUNet paper compares against.

The backbone is the torchvision ResNet layout (bottleneck blocks, stride on the 3x3 conv, 1x1
projection shortcuts, BatchNorm without conv biases), written here because torchvision cannot be
installed beside our torch. Output stride 16 dilates layer4 (torchvision's
replace_stride_with_dilation=[False, False, True]); OS8 also dilates layer3. The segmentation head
is a 1x1 conv to the classes and bilinear upsampling to the input size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ResNetConfig:
    layers: tuple[int, int, int, int] = (3, 4, 23, 3)
    width: int = 64  # channels of the stem and of layer1's bottleneck


RESNET_CONFIGS = {"resnet101": ResNetConfig()}
EXPANSION = 4
DILATED_LAYERS = {8: (False, True, True), 16: (False, False, True), 32: (False, False, False)}


def resnet_config(overrides: dict) -> ResNetConfig:
    return replace(RESNET_CONFIGS["resnet101"], **overrides)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride, dilation), 1x1 expand; projection shortcut when the shape changes."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:  # fmt: skip
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNetBackbone(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) and four bottleneck stages; no pooling or fc."""

    def __init__(self, config: ResNetConfig, output_stride: int = 32) -> None:
        super().__init__()
        if output_stride not in DILATED_LAYERS:
            raise ValueError(f"output_stride must be one of {sorted(DILATED_LAYERS)}, got {output_stride}")
        w = config.width
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.inplanes, self.dilation = w, 1
        self.layer1 = self._make_layer(w, config.layers[0], 1, False)
        dilate = DILATED_LAYERS[output_stride]
        self.layer2 = self._make_layer(2 * w, config.layers[1], 2, dilate[0])
        self.layer3 = self._make_layer(4 * w, config.layers[2], 2, dilate[1])
        self.layer4 = self._make_layer(8 * w, config.layers[3], 2, dilate[2])
        self.out_channels = 8 * w * EXPANSION

    def _make_layer(self, planes: int, blocks: int, stride: int, dilate: bool) -> nn.Sequential:
        """torchvision's rule: a dilated stage keeps stride 1, its first block uses the previous dilation."""
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * EXPANSION:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * EXPANSION, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * EXPANSION))  # fmt: skip
        layers = [Bottleneck(self.inplanes, planes, stride, previous_dilation, downsample)]
        self.inplanes = planes * EXPANSION
        layers += [Bottleneck(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ResNetClassifier(nn.Module):
    """Backbone, global average pool, fc: the ImageNet classifier (torchvision's resnet101)."""

    def __init__(self, config: ResNetConfig, num_classes: int = 1000) -> None:
        super().__init__()
        self.backbone = ResNetBackbone(config)
        self.fc = nn.Linear(self.backbone.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.backbone(x), 1), 1))


class DilatedResNet(nn.Module):
    """Segmentation baseline: dilated backbone, 1x1 conv head, bilinear upsampling to the input size."""

    def __init__(self, config: ResNetConfig, num_classes: int = 21, output_stride: int = 16) -> None:
        super().__init__()
        self.backbone = ResNetBackbone(config, output_stride)
        self.head = nn.Conv2d(self.backbone.out_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def build_resnet(spec) -> nn.Module:
    """Registry builder for a `ModelSpec` whose arch is a ResNet (only the plain 1x1 head)."""
    if spec.head != "plain":
        raise ValueError(f"the ResNet baseline has only the plain 1x1 head, got head {spec.head!r}")
    config = spec.config()
    if spec.task == "classification":
        return ResNetClassifier(config, spec.num_classes)
    return DilatedResNet(config, spec.num_classes, spec.output_stride)
