"""DatasetSpec: one split of a dataset as a small JSON-ready value, enough to build it again.

Training records the specs of its training and validation sets in the checkpoint's metadata
(`ModelMetadata.training["dataset"] = {"train": ..., "val": ...}`), so evaluation and benchmarks
find the validation set there (`validation_spec`) instead of guessing it from flags. Torch-free.

    spec = DatasetSpec("synthetic", split="val", num_samples=200, size=(128, 128), num_classes=7, seed=0)
    DatasetSpec.from_dict(spec.to_dict()) == spec; spec.build() is the dataset; spec.describe() one line
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

from ..metadata import ModelMetadata
from .base import DatasetError
from .cityscapes import CityscapesSegmentation
from .folder import FolderSegmentation
from .synthetic import DEFAULT_CLASSES, DEFAULT_SAMPLES, DEFAULT_SEED, DEFAULT_SIZE, SyntheticSegmentation
from .voc import SBDSegmentation, VOCAugSegmentation, VOCSegmentation


@dataclass(frozen=True)
class DatasetKind:
    """One kind of dataset: the DatasetSpec fields it needs and may take (every other field stays
    None), how to build it from a spec, and the kind it is scored on (voc_aug: VOC's sets)."""

    required: tuple[str, ...]
    build: Callable[["DatasetSpec"], object]
    optional: tuple[str, ...] = ()
    scored_as: str | None = None


def _split_kind(dataset: type) -> DatasetKind:
    return DatasetKind(("root", "split"), lambda spec: dataset(spec.root, spec.split))


# The one registry of dataset kinds: DatasetSpec checks and builds from it, and every command's
# --dataset offers its names (sunet_deploy.data.selection). A new kind is one entry here.
# voc_aug is always the trainaug set and a folder is one set: neither has a split.
KINDS: dict[str, DatasetKind] = {
    "synthetic": DatasetKind(("split", "num_samples", "size", "num_classes", "seed"), lambda spec: SyntheticSegmentation(
        spec.num_samples, spec.size, spec.num_classes, spec.seed, spec.split)),
    "voc": _split_kind(VOCSegmentation),
    "sbd": _split_kind(SBDSegmentation),
    "voc_aug": DatasetKind(("root", "sbd_root"), lambda spec: VOCAugSegmentation(spec.root, spec.sbd_root), scored_as="voc"),
    "cityscapes": _split_kind(CityscapesSegmentation),
    "folder": DatasetKind(("root",), lambda spec: FolderSegmentation(spec.root, spec.num_classes), ("num_classes",)),
}  # fmt: skip
_TYPES = {"root": str, "split": str, "sbd_root": str, "num_samples": int, "num_classes": int, "seed": int}


@dataclass(frozen=True)
class DatasetSpec:
    """Which dataset: `kind` and the fields that kind uses (KINDS); the others stay None.

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
        if self.kind not in KINDS:
            raise DatasetError(f"unknown dataset kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        required, optional = KINDS[self.kind].required, KINDS[self.kind].optional
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
        return KINDS[self.kind].build(self)

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


def synthetic_spec(split: str = "val", num_classes: int = DEFAULT_CLASSES, num_samples: int | None = None,
                   size: tuple[int, int] | None = None) -> DatasetSpec:
    """A synthetic set with the defaults every command shares (synthetic.DEFAULT_*) where not given."""
    return DatasetSpec("synthetic", split=split, num_samples=num_samples or DEFAULT_SAMPLES.get(split, DEFAULT_SAMPLES["val"]),
                       size=tuple(size or DEFAULT_SIZE), num_classes=num_classes, seed=DEFAULT_SEED)  # fmt: skip


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
