"""Model registry: build any model from a small, JSON-serialisable `ModelSpec`.

    spec = ModelSpec("sunet64", num_classes=21, output_stride=16)
    model = build_model(spec)

Custom sizes: `ModelSpec("sunet64", overrides={"width": 32, "modules_per_block": [1, 1, 1, 1]})`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

from torch import nn

from .resnet import build_resnet, resnet_config
from .sunet import (
    HEADS,
    OUTPUT_STRIDES,
    SUNET_CONFIGS,
    DilatedSUNet,
    SUNetBackbone,
    SUNetClassifier,
    SUNetConfig,
    resolve_config,
)

TASKS = ("segmentation", "classification")


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model; stored in checkpoints and exported artifacts."""

    arch: str
    task: str = "segmentation"
    num_classes: int = 21
    output_stride: int = 16
    head: str = "plain"
    overrides: dict = field(default_factory=dict)

    def config(self) -> SUNetConfig:
        return MODEL_REGISTRY[self.arch].config(self.overrides)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True)
class RegisteredModel:
    """A registry entry: a family builder plus the family's config lookup."""

    build: Callable[["ModelSpec"], nn.Module]
    config: Callable[[dict], object]


MODEL_REGISTRY: dict[str, RegisteredModel] = {}


def register_model(name: str, build: Callable[[ModelSpec], nn.Module], config: Callable[[dict], object]) -> None:
    if name in MODEL_REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    MODEL_REGISTRY[name] = RegisteredModel(build, config)


def _build_sunet(spec: ModelSpec) -> nn.Module:
    config = spec.config()
    if spec.task == "classification":
        return SUNetClassifier(config, spec.num_classes)
    return DilatedSUNet(config, spec.num_classes, spec.output_stride, spec.head)


for _name in SUNET_CONFIGS:
    register_model(_name, _build_sunet, lambda overrides, _n=_name: resolve_config(_n, **overrides))
register_model("resnet101", build_resnet, resnet_config)


def build_model(spec: ModelSpec) -> nn.Module:
    """Build a model from its spec, with a clear error for every invalid field."""
    if spec.arch not in MODEL_REGISTRY:
        raise ValueError(f"unknown architecture {spec.arch!r}; known: {', '.join(sorted(MODEL_REGISTRY))}")
    if spec.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {spec.task!r}")
    if spec.output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {spec.output_stride}")
    if spec.head not in HEADS:
        raise ValueError(f"head must be one of {sorted(HEADS)}, got {spec.head!r}")
    if spec.num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {spec.num_classes}")
    return MODEL_REGISTRY[spec.arch].build(spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "MODEL_REGISTRY",
    "ModelSpec",
    "SUNetConfig",
    "SUNetBackbone",
    "SUNetClassifier",
    "DilatedSUNet",
    "build_model",
    "count_parameters",
    "register_model",
]
