"""Cityscapes fine annotations, labelIds mapped to the 19 train ids."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import DatasetError, Sample, SegmentationDataset, check_files_exist, require_dir

CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
    "bicycle",
]  # fmt: skip
_CITYSCAPES_COLORS = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]  # fmt: skip


def cityscapes_palette() -> np.ndarray:
    """The official colours of the 19 Cityscapes train ids, (19, 3) uint8."""
    return np.array(_CITYSCAPES_COLORS, dtype=np.uint8)


NUM_LABEL_IDS = 34
# labelId -> train id for the 19 evaluated classes (cityscapesScripts labels.py); all others ignore.
_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
              25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip
LABEL_ID_TO_TRAIN_ID = np.full(256, 255, dtype=np.uint8)
LABEL_ID_TO_TRAIN_ID[list(_TRAIN_IDS)] = list(_TRAIN_IDS.values())


class CityscapesSegmentation(SegmentationDataset):
    """`root` holds leftImg8bit/{split}/{city}/*_leftImg8bit.png and gtFine/{split}/{city}/*_gtFine_labelIds.png."""

    def __init__(self, root: str | os.PathLike, split: str = "train") -> None:
        root = require_dir(Path(root), "Cityscapes root")
        image_dir = require_dir(root / "leftImg8bit" / split, "Cityscapes image split folder")
        label_dir = require_dir(root / "gtFine" / split, "Cityscapes label split folder")
        samples = []
        for image in sorted(image_dir.glob("*/*_leftImg8bit.png")):
            stem = image.name[: -len("_leftImg8bit.png")]
            samples.append(Sample(stem, image, label_dir / image.parent.name / f"{stem}_gtFine_labelIds.png"))
        check_files_exist(samples)
        super().__init__(samples, CITYSCAPES_CLASSES, cityscapes_palette(), image_dir)

    def read_label(self, path: Path) -> np.ndarray:
        label_ids = super().read_label(path)
        bad = label_ids >= NUM_LABEL_IDS
        if bad.any():
            raise DatasetError(f"{path}: values {np.unique(label_ids[bad])[:10].tolist()} are not Cityscapes labelIds (0-33)")
        return LABEL_ID_TO_TRAIN_ID[label_ids]
