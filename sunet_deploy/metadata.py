"""The metadata every artifact carries (checkpoint, ONNX model, TensorRT engine).

Torch-free on purpose: a process that only serves an exported engine reads this too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelMetadata:
    """What a runtime needs to turn an image into a mask without any command-line flags.

    `model` is the architecture spec as a dict (arch, task, num_classes, output_stride, head,
    overrides); mean/std are in 0-1 RGB units; `output` is "logits" or "labels". Keys this
    version does not know (such as the `resize_policy` of older artifacts, always "none") are ignored.
    """

    model: dict
    classes: list[str]
    palette: list[list[int]]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_layout: str = "NCHW"
    input_color: str = "RGB"
    output: str = "logits"
    source_sha256: str = ""
    training: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        num_classes = self.model.get("num_classes")
        if num_classes is not None and len(self.classes) != num_classes:
            raise ValueError(f"{len(self.classes)} class names for a model with {num_classes} classes")
        if self.output not in ("logits", "labels"):
            raise ValueError(f"output must be 'logits' or 'labels', got {self.output!r}")
        self.mean = tuple(self.mean)
        self.std = tuple(self.std)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def arch(self) -> str:
        return self.model["arch"]

    @property
    def output_stride(self) -> int:
        return self.model.get("output_stride", 32)

    @property
    def crop_size(self) -> int | None:
        """The crop size the model was trained on, as training records it (None: not recorded)."""
        crop = self.training.get("crop_size")
        return int(crop) if crop else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMetadata":
        data = json.loads(text)
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)
