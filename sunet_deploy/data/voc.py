"""PASCAL VOC 2012, SBD and their union "trainaug" (SBD train+val + VOC train - VOC val)."""

from __future__ import annotations

import os
from pathlib import Path

from ..pipeline.palettes import voc_palette
from .base import SegmentationDataset, read_split_file, require_dir, samples_from_ids

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]  # fmt: skip


def _voc_ids(root: Path, split: str) -> list[str]:
    return read_split_file(root / "ImageSets" / "Segmentation" / f"{split}.txt")


def _sbd_ids(root: Path, split: str) -> list[str]:
    return read_split_file(root / "dataset" / f"{split}.txt")


def _voc_samples(root: Path, ids: list[str]):
    return samples_from_ids(ids, root / "JPEGImages", root / "SegmentationClass", ".jpg", ".png")


def _sbd_samples(root: Path, ids: list[str]):
    return samples_from_ids(ids, root / "dataset" / "img", root / "dataset" / "cls", ".jpg", ".mat")


class VOCSegmentation(SegmentationDataset):
    """`root` holds JPEGImages/, SegmentationClass/ (palette PNGs) and ImageSets/Segmentation/{split}.txt."""

    def __init__(self, root: str | os.PathLike, split: str = "train") -> None:
        root = require_dir(Path(root), "VOC root")
        super().__init__(_voc_samples(root, _voc_ids(root, split)), VOC_CLASSES, voc_palette(21), root)


class SBDSegmentation(SegmentationDataset):
    """`root` holds dataset/img/*.jpg, dataset/cls/*.mat (GTcls.Segmentation) and dataset/{split}.txt."""

    def __init__(self, root: str | os.PathLike, split: str = "train") -> None:
        root = require_dir(Path(root), "SBD root")
        super().__init__(_sbd_samples(root, _sbd_ids(root, split)), VOC_CLASSES, voc_palette(21), root)


def trainaug_ids(voc_root: str | os.PathLike, sbd_root: str | os.PathLike) -> list[str]:
    """The "trainaug" ids: SBD train + SBD val + VOC train, minus VOC val (10,582 on the real data)."""
    voc_root, sbd_root = Path(voc_root), Path(sbd_root)
    ids = set(_sbd_ids(sbd_root, "train")) | set(_sbd_ids(sbd_root, "val")) | set(_voc_ids(voc_root, "train"))
    return sorted(ids - set(_voc_ids(voc_root, "val")))


class VOCAugSegmentation(SegmentationDataset):
    """The trainaug set: VOC's own labels where VOC train has the image, SBD's .mat labels otherwise."""

    def __init__(self, voc_root: str | os.PathLike, sbd_root: str | os.PathLike) -> None:
        voc_root = require_dir(Path(voc_root), "VOC root")
        sbd_root = require_dir(Path(sbd_root), "SBD root")
        ids = trainaug_ids(voc_root, sbd_root)
        voc_train = set(_voc_ids(voc_root, "train"))
        samples = _voc_samples(voc_root, [i for i in ids if i in voc_train])
        samples += _sbd_samples(sbd_root, [i for i in ids if i not in voc_train])
        samples.sort(key=lambda s: s.id)
        super().__init__(samples, VOC_CLASSES, voc_palette(21), f"{voc_root} + {sbd_root}")
