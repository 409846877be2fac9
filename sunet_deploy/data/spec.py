"""DatasetSpec: one split of a dataset as a small JSON-ready value, enough to build it again.

Training records the specs of its training and validation sets in the checkpoint's metadata
(`ModelMetadata.training["dataset"] = {"train": ..., "val": ...}`), so evaluation and benchmarks
find the validation set there (`validation_spec`) instead of guessing it from flags. Torch-free.

    spec = DatasetSpec("synthetic", split="val", num_samples=200, size=(128, 128), num_classes=7, seed=0)
    DatasetSpec.from_dict(spec.to_dict()) == spec; spec.build() is the dataset; spec.describe() one line
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..metadata import ModelMetadata
from .base import DatasetError
from .cityscapes import CityscapesSegmentation
from .folder import FolderSegmentation
from .synthetic import SyntheticSegmentation
from .voc import SBDSegmentation, VOCAugSegmentation, VOCSegmentation

# kind: (required fields, optional fields); every other field must be None. voc_aug is always the
# trainaug set and a folder is one set: neither has a split.
KIND_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "synthetic": (("split", "num_samples", "size", "num_classes", "seed"), ()),
    "voc": (("root", "split"), ()),
    "sbd": (("root", "split"), ()),
    "voc_aug": (("root", "sbd_root"), ()),
    "cityscapes": (("root", "split"), ()),
    "folder": (("root",), ("num_classes",)),
}
_TYPES = {"root": str, "split": str, "sbd_root": str, "num_samples": int, "num_classes": int, "seed": int}
_SPLIT_DATASETS = {"voc": VOCSegmentation, "sbd": SBDSegmentation, "cityscapes": CityscapesSegmentation}


@dataclass(frozen=True)
class DatasetSpec:
    """Which dataset: `kind` and the fields that kind uses (KIND_FIELDS); the others stay None.

    synthetic: split, num_samples, size (H, W), num_classes, seed. voc, sbd, cityscapes: root, split.
    voc_aug: root (VOC) and sbd_root. folder: root, num_classes (None: from root/classes.txt).
    """

    kind: str
    root: str | None = None
    split: str | None = None
    num_samples: int | None = None
    size: tuple[int, int] | None = None
    num_classes: int | None = None
    seed: int | None = None
    sbd_root: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KIND_FIELDS:
            raise DatasetError(f"unknown dataset kind {self.kind!r}; expected one of {', '.join(KIND_FIELDS)}")
        required, optional = KIND_FIELDS[self.kind]
        missing = [name for name in required if getattr(self, name) is None]
        if missing:
            raise DatasetError(f"dataset {self.kind!r} needs {', '.join(missing)}")
        extra = [f.name for f in fields(self) if f.name != "kind" and getattr(self, f.name) is not None
                 and f.name not in required + optional]  # fmt: skip
        if extra:
            raise DatasetError(f"dataset {self.kind!r} takes no {', '.join(extra)}")
        self._check_types()

    def _check_types(self) -> None:
        for name, kind in _TYPES.items():
            value = getattr(self, name)
            if value is not None and (type(value) is not kind):
                raise DatasetError(f"dataset spec: {name} must be of type {kind.__name__}, got {value!r}")
        if self.size is not None and not (len(self.size) == 2 and all(type(v) is int and v > 0 for v in self.size)):
            raise DatasetError(f"dataset spec: size must be two positive integers (H, W), got {self.size!r}")

    def to_dict(self) -> dict:
        """The fields that are set, JSON-ready (size as a list)."""
        return {k: list(v) if k == "size" else v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict) -> "DatasetSpec":
        """The spec `to_dict` wrote; unknown keys and fields the kind does not use are errors."""
        if not isinstance(data, dict):
            raise DatasetError(f"a dataset spec is a JSON object, got {data!r}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise DatasetError(f"dataset spec: unknown keys {unknown}; known: {', '.join(known)}")
        if "kind" not in data:
            raise DatasetError(f"dataset spec without a kind: {data}")
        size = data.get("size")
        return cls(**{**data, "size": tuple(size) if size is not None else None})

    def build(self):
        """The dataset (numpy samples) this spec describes."""
        if self.kind == "synthetic":
            return SyntheticSegmentation(self.num_samples, self.size, self.num_classes, self.seed, self.split)
        if self.kind == "voc_aug":
            return VOCAugSegmentation(self.root, self.sbd_root)
        if self.kind == "folder":
            return FolderSegmentation(self.root, self.num_classes)
        return _SPLIT_DATASETS[self.kind](self.root, self.split)

    def describe(self) -> str:
        """One line for people, e.g. 'synthetic val: 200 images 128x128, 7 classes, seed 0'."""
        if self.kind == "synthetic":
            h, w = self.size
            return f"synthetic {self.split}: {self.num_samples} images {h}x{w}, {self.num_classes} classes, seed {self.seed}"
        if self.kind == "voc_aug":
            return f"voc_aug trainaug: VOC {self.root} + SBD {self.sbd_root}"
        if self.kind == "folder":
            classes = f"{self.num_classes} classes" if self.num_classes else "classes from classes.txt"
            return f"folder {self.root} ({classes})"
        return f"{self.kind} {self.split}: {self.root}"


def recorded_spec(meta: ModelMetadata, split: str) -> DatasetSpec | None:
    """The "train" or "val" set recorded by training in a checkpoint's metadata; None if it records
    none (checkpoints from before training recorded it)."""
    recorded = meta.training.get("dataset")
    if not isinstance(recorded, dict) or split not in recorded:
        return None
    return DatasetSpec.from_dict(recorded[split])


def validation_spec(meta: ModelMetadata) -> DatasetSpec | None:
    """The validation set recorded by training in a checkpoint's metadata (see `recorded_spec`)."""
    return recorded_spec(meta, "val")
