"""Segmentation datasets as numpy (HxWx3 uint8 RGB image, HxW uint8 label, 255 = ignore) and transforms.

A dataset is named by a `DatasetSpec` (`DatasetSpec("voc", root, "val").build()`); its kinds are
the one registry `KINDS`, and every command chooses one with the flags of `selection.add_dataset_flags`.
"""

from __future__ import annotations

from .base import IGNORE_INDEX, DatasetError, SegmentationDataset
from .cityscapes import CityscapesSegmentation
from .folder import FolderSegmentation
from .spec import KINDS, DatasetKind, DatasetSpec, recorded_spec, validation_spec
from .synthetic import SyntheticSegmentation
from .transforms import EvalTransform, TrainTransform
from .voc import SBDSegmentation, VOCAugSegmentation, VOCSegmentation, trainaug_ids

__all__ = [
    "IGNORE_INDEX", "KINDS", "CityscapesSegmentation", "DatasetError", "DatasetKind", "DatasetSpec", "EvalTransform",
    "FolderSegmentation", "SBDSegmentation", "SegmentationDataset", "SyntheticSegmentation",
    "TrainTransform", "VOCAugSegmentation", "VOCSegmentation", "trainaug_ids", "recorded_spec", "validation_spec",
]  # fmt: skip
