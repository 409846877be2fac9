"""A plain folder layout for custom data: images/ and masks/ with matching stems, classes.txt."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Sequence

from ..pipeline.palettes import voc_palette
from .base import DatasetError, Sample, SegmentationDataset, check_files_exist, require_dir

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
CLASSES_FILE = "classes.txt"


def read_class_names(root: str | os.PathLike) -> list[str] | None:
    """The class names in root/classes.txt, one per line (blank lines skipped); None without the file."""
    path = Path(root) / CLASSES_FILE
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"{path}: no class names")
    return names


def placeholder_classes(num_classes: int) -> list[str]:
    """The names of a folder dataset's classes when nothing names them."""
    return [f"class{i}" for i in range(num_classes)]


class FolderSegmentation(SegmentationDataset):
    """`root/images/<stem>.<jpg|png|...>` with `root/masks/<stem>.png` (palette or grayscale indices).

    The class names come from `classes` if given, else from `root/classes.txt` (one per line, as
    `python -m sunet_deploy.data` writes it), else they are class0, class1, ... of `num_classes`.
    """

    def __init__(self, root: str | os.PathLike, num_classes: int | None = None,
                 classes: Sequence[str] | None = None) -> None:  # fmt: skip
        root = require_dir(Path(root), "dataset root")
        image_dir = require_dir(root / "images", "image folder")
        mask_dir = require_dir(root / "masks", "mask folder")
        classes = _class_names(root, num_classes, classes)
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        duplicates = sorted(stem for stem, n in Counter(p.stem for p in images).items() if n > 1)
        if duplicates:
            raise DatasetError(f"{image_dir}: several images share the stem(s) {duplicates[:5]}")
        samples = [Sample(p.stem, p, mask_dir / f"{p.stem}.png") for p in images]
        check_files_exist(samples)
        super().__init__(samples, classes, voc_palette(len(classes)), image_dir)


def _class_names(root: Path, num_classes: int | None, classes: Sequence[str] | None) -> list[str]:
    if classes is not None:
        source = "the class names given"
    else:
        classes, source = read_class_names(root), str(root / CLASSES_FILE)
    if classes is None:
        if num_classes is None:
            raise DatasetError(f"folder dataset {root} has no {CLASSES_FILE}: give its number of classes "
                               "(num_classes, --num-classes)")  # fmt: skip
        return placeholder_classes(num_classes)
    if num_classes is not None and len(classes) != num_classes:
        raise DatasetError(f"{source}: {len(classes)} classes, but num_classes is {num_classes}")
    return list(classes)
