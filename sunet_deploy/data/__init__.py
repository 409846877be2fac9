"""Segmentation datasets as numpy (HxWx3 uint8 RGB image, HxW uint8 label, 255 = ignore) and transforms."""

from __future__ import annotations

import os

from .base import IGNORE_INDEX, DatasetError, SegmentationDataset
from .cityscapes import CityscapesSegmentation
from .folder import FolderSegmentation
from .spec import KIND_FIELDS, DatasetSpec, recorded_spec, validation_spec
from .synthetic import SyntheticSegmentation
from .transforms import EvalTransform, TrainTransform
from .voc import SBDSegmentation, VOCAugSegmentation, VOCSegmentation, trainaug_ids

KINDS = tuple(KIND_FIELDS)

__all__ = [
    "IGNORE_INDEX", "KINDS", "CityscapesSegmentation", "DatasetError", "DatasetSpec", "EvalTransform",
    "FolderSegmentation", "SBDSegmentation", "SegmentationDataset", "SyntheticSegmentation",
    "TrainTransform", "VOCAugSegmentation", "VOCSegmentation", "build_dataset", "trainaug_ids",
    "recorded_spec",
    "validation_spec",
]  # fmt: skip


def build_dataset(kind: str, root: str | os.PathLike | None = None, split: str = "train", **kw):
    """Build a dataset by kind name.

    synthetic: no root; kw num_samples, size, num_classes, seed. voc, sbd, cityscapes: root and split.
    voc_aug: root = VOC root, kw sbd_root (the split is always trainaug). folder: root, kw num_classes
    and classes (default: the names in root/classes.txt).
    """
    if kind == "synthetic":
        return SyntheticSegmentation(split=split, **kw)
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}")
    if root is None:
        raise DatasetError(f"dataset kind {kind!r} needs a root directory")
    if kind == "voc":
        return VOCSegmentation(root, split, **kw)
    if kind == "sbd":
        return SBDSegmentation(root, split, **kw)
    if kind == "voc_aug":
        return VOCAugSegmentation(root, **kw)
    if kind == "cityscapes":
        return CityscapesSegmentation(root, split, **kw)
    return FolderSegmentation(root, **kw)
