"""Segmentation metrics from a dataset-wide confusion matrix (numpy only).

Rows of the confusion matrix are the true classes, columns the predicted ones. Pixels whose target
is `ignore_index` are left out. mIoU averages over the classes present: a class with zero union
(in neither target nor prediction) has IoU NaN and is excluded from the mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None = 255) -> np.ndarray:
    """(num_classes, num_classes) int64 counts; matrix[t, p] = pixels of class t predicted as p."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    pred, target = pred.ravel().astype(np.int64), target.ravel().astype(np.int64)
    if ignore_index is not None:
        valid = target != ignore_index
        pred, target = pred[valid], target[valid]
    for name, values in (("target", target), ("prediction", pred)):
        bad = (values < 0) | (values >= num_classes)
        if bad.any():
            raise ValueError(
                f"{name} has values outside [0, {num_classes}): {np.unique(values[bad])[:10].tolist()}"
            )
    counts = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


@dataclass
class Scores:
    """Results of a confusion matrix; per-class arrays hold NaN for classes that are not present."""

    iou: np.ndarray
    class_accuracy: np.ndarray
    miou: float
    pixel_accuracy: float
    mean_class_accuracy: float
    pixels: int

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict:
        """JSON-ready dict (NaN becomes None); per-class values keyed by name when names are given."""
        names = list(class_names) if class_names is not None else [str(i) for i in range(len(self.iou))]
        return {
            "miou": _json_float(self.miou),
            "pixel_accuracy": _json_float(self.pixel_accuracy),
            "mean_class_accuracy": _json_float(self.mean_class_accuracy),
            "pixels": self.pixels,
            "iou": {n: _json_float(v) for n, v in zip(names, self.iou)},
            "class_accuracy": {n: _json_float(v) for n, v in zip(names, self.class_accuracy)},
        }


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


class ConfusionMatrix:
    """Accumulates a confusion matrix over a dataset; merge matrices of several workers with `+=`."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, ignore_index: int | None = 255) -> "ConfusionMatrix":
        """Wrap counts gathered elsewhere, e.g. after an all-reduce of `.matrix` across processes."""
        matrix = np.asarray(matrix, dtype=np.int64)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"a confusion matrix must be square, got shape {matrix.shape}")
        cm = cls(matrix.shape[0], ignore_index)
        cm.matrix = matrix.copy()
        return cm

    def update(self, pred: np.ndarray, target: np.ndarray) -> "ConfusionMatrix":
        self.matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class counts into {self.num_classes}-class counts")
        self.matrix += other.matrix
        return self

    __iadd__ = merge

    def __add__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        return ConfusionMatrix.from_matrix(self.matrix, self.ignore_index).merge(other)

    def reset(self) -> None:
        self.matrix[:] = 0

    def scores(self) -> Scores:
        m = self.matrix.astype(np.float64)
        true_positive = np.diag(m)
        support = m.sum(axis=1)
        union = support + m.sum(axis=0) - true_positive
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, true_positive / union, np.nan)
            class_accuracy = np.where(support > 0, true_positive / support, np.nan)
        total = m.sum()
        return Scores(
            iou=iou,
            class_accuracy=class_accuracy,
            miou=_nanmean(iou),
            pixel_accuracy=float(true_positive.sum() / total) if total else math.nan,
            mean_class_accuracy=_nanmean(class_accuracy),
            pixels=int(total),
        )

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict:
        return {**self.scores().to_dict(class_names), "confusion_matrix": self.matrix.tolist()}


def format_table(scores: Scores | ConfusionMatrix, class_names: Sequence[str] | None = None) -> str:
    """A plain-text table of per-class IoU and accuracy (in %) with the summary lines below it."""
    if isinstance(scores, ConfusionMatrix):
        scores = scores.scores()
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(scores.iou))]
    width = max(len("mean class accuracy"), *(len(n) for n in names))

    def pct(value: float) -> str:
        return "     -" if math.isnan(value) else f"{100 * value:6.2f}"

    lines = [f"{'class':<{width}}     IoU     Acc"]
    lines += [f"{n:<{width}}  {pct(i)}  {pct(a)}" for n, i, a in zip(names, scores.iou, scores.class_accuracy)]
    lines.append("-" * len(lines[0]))
    lines.append(f"{'mIoU':<{width}}  {pct(scores.miou)}")
    lines.append(f"{'pixel accuracy':<{width}}  {pct(scores.pixel_accuracy)}")
    lines.append(f"{'mean class accuracy':<{width}}  {pct(scores.mean_class_accuracy)}")
    return "\n".join(lines)
