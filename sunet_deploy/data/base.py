"""What every file-backed dataset shares: a list of (id, image, label) files, checked on construction."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.io

from ..pipeline.images import ImageError, read_image
from ..pipeline.palettes import read_label_png

IGNORE_INDEX = 255


class DatasetError(ValueError):
    """A dataset that cannot be used as it is on disk; the message names the path."""


@dataclass(frozen=True)
class Sample:
    id: str
    image: Path
    label: Path


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what} not found: {path}")
    return path


def read_split_file(path: Path) -> list[str]:
    """Sample ids, one per line (only the first word counts, blank lines skipped)."""
    if not path.is_file():
        raise DatasetError(f"split file not found: {path}")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def samples_from_ids(ids: Sequence[str], image_dir: Path, label_dir: Path, image_ext: str, label_ext: str) -> list[Sample]:
    """Samples for ids listed in a split file; every image and every label must exist."""
    samples = [Sample(i, image_dir / f"{i}{image_ext}", label_dir / f"{i}{label_ext}") for i in ids]
    check_files_exist(samples)
    return samples


def check_files_exist(samples: Sequence[Sample]) -> None:
    for kind in ("image", "label"):
        missing = [str(getattr(s, kind)) for s in samples if not getattr(s, kind).is_file()]
        if missing:
            more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
            raise DatasetError(f"{len(missing)} {kind} file(s) missing: {', '.join(missing[:3])}{more}")


def read_sbd_mat(path: str | os.PathLike) -> np.ndarray:
    """The class indices of an SBD `cls/*.mat` file (struct GTcls, field Segmentation), unchanged."""
    try:
        gt = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)["GTcls"]
        label = np.asarray(gt.Segmentation)
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise DatasetError(f"{path}: not an SBD label file with GTcls.Segmentation ({exc})") from exc
    if label.ndim != 2:
        raise DatasetError(f"{path}: GTcls.Segmentation has shape {label.shape}, expected HxW")
    if label.size and (label.min() < 0 or label.max() > 255):
        raise DatasetError(f"{path}: label values {label.min()}..{label.max()} are not class indices")
    return label.astype(np.uint8)


def read_label_file(path: Path) -> np.ndarray:
    return read_sbd_mat(path) if path.suffix == ".mat" else read_label_png(path)


def check_label_values(label: np.ndarray, num_classes: int, path: Path) -> None:
    bad = (label >= num_classes) & (label != IGNORE_INDEX)
    if bad.any():
        values = np.unique(label[bad]).tolist()
        raise DatasetError(
            f"{path}: label values {values[:10]} outside [0, {num_classes}) and not {IGNORE_INDEX} (ignore)"
        )


class SegmentationDataset:
    """Image/label file pairs -> (HxWx3 uint8 RGB image, HxW uint8 label with 255 = ignore)."""

    def __init__(self, samples: Sequence[Sample], classes: Sequence[str], palette: np.ndarray, where: str | Path) -> None:
        if not samples:
            raise DatasetError(f"no samples found in {where}")
        self.samples = list(samples)
        self.classes = list(classes)
        self.palette = np.asarray(palette, dtype=np.uint8)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def name(self, index: int) -> str:
        return self.samples[index].id

    def read_label(self, path: Path) -> np.ndarray:
        return read_label_file(path)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        sample = self.samples[index]
        try:
            image = read_image(sample.image)
            label = self.read_label(sample.label)
        except ImageError as exc:
            raise DatasetError(str(exc)) from exc
        if image.shape[:2] != label.shape:
            raise DatasetError(
                f"{sample.label}: label size {label.shape} differs from image size {image.shape[:2]} ({sample.image})"
            )
        check_label_values(label, self.num_classes, sample.label)
        return image, label
