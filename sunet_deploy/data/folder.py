"""A plain folder layout for custom data: images/ and masks/ with matching stems."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Sequence

from ..preprocess import voc_palette
from .base import DatasetError, Sample, SegmentationDataset, check_files_exist, require_dir

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class FolderSegmentation(SegmentationDataset):
    """`root/images/<stem>.<jpg|png|...>` with `root/masks/<stem>.png` (palette or grayscale indices)."""

    def __init__(self, root: str | os.PathLike, num_classes: int, classes: Sequence[str] | None = None) -> None:
        root = require_dir(Path(root), "dataset root")
        image_dir = require_dir(root / "images", "image folder")
        mask_dir = require_dir(root / "masks", "mask folder")
        if classes is None:
            classes = [f"class{i}" for i in range(num_classes)]
        if len(classes) != num_classes:
            raise DatasetError(f"{root}: {len(classes)} class names for {num_classes} classes")
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        duplicates = sorted(stem for stem, n in Counter(p.stem for p in images).items() if n > 1)
        if duplicates:
            raise DatasetError(f"{image_dir}: several images share the stem(s) {duplicates[:5]}")
        samples = [Sample(p.stem, p, mask_dir / f"{p.stem}.png") for p in images]
        check_files_exist(samples)
        super().__init__(samples, classes, voc_palette(num_classes), image_dir)
