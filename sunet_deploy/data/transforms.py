"""Training augmentation of the paper and the evaluation transform (OpenCV, numpy random Generator).

Every transform takes and returns (image HxWx3 uint8 RGB, label HxW uint8); images are
interpolated bilinearly and labels by nearest neighbour, so labels never get new values.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .base import IGNORE_INDEX

IMAGENET_MEAN_RGB = (124, 116, 104)  # ImageNet mean * 255: padded pixels normalise to about zero

Pair = tuple[np.ndarray, np.ndarray]


def _size(crop_size: int | tuple[int, int]) -> tuple[int, int]:
    return (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)


def resize_pair(image: np.ndarray, label: np.ndarray, size: tuple[int, int]) -> Pair:
    """Resize to (h, w): image bilinear, label nearest."""
    h, w = size
    return (cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR),
            cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST))  # fmt: skip


def random_scale(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, scale_range: tuple[float, float]) -> Pair:
    scale = rng.uniform(*scale_range)
    h, w = label.shape
    return resize_pair(image, label, (max(1, round(h * scale)), max(1, round(w * scale))))


def pad_to(image: np.ndarray, label: np.ndarray, size: tuple[int, int], fill: tuple[int, int, int]) -> Pair:
    """Pad bottom/right up to at least `size`: image with `fill`, label with 255 (ignore)."""
    pad_h, pad_w = max(0, size[0] - label.shape[0]), max(0, size[1] - label.shape[1])
    if not pad_h and not pad_w:
        return image, label
    image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=fill)
    label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=IGNORE_INDEX)
    return image, label


def random_crop(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, size: tuple[int, int]) -> Pair:
    h, w = label.shape
    top = int(rng.integers(0, h - size[0] + 1))
    left = int(rng.integers(0, w - size[1] + 1))
    window = (slice(top, top + size[0]), slice(left, left + size[1]))
    return image[window], label[window]


def random_hflip(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> Pair:
    if rng.random() < p:
        return image[:, ::-1], label[:, ::-1]
    return image, label


def random_rotate(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, degrees: float,
                  fill: tuple[int, int, int]) -> Pair:  # fmt: skip
    """Rotate about the centre by an angle in [-degrees, degrees]; uncovered label pixels become 255."""
    angle = rng.uniform(-degrees, degrees)
    h, w = label.shape
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=fill)  # fmt: skip
    label = cv2.warpAffine(np.ascontiguousarray(label), matrix, (w, h), flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE_INDEX)  # fmt: skip
    return image, label


@dataclass
class TrainTransform:
    """Random scale, pad to the crop size, random crop, horizontal flip, small rotation (paper order)."""

    crop_size: int | tuple[int, int] = 512
    scale_range: tuple[float, float] = (0.5, 2.0)
    rotate_degrees: float = 10.0
    flip: bool = True
    fill: tuple[int, int, int] = IMAGENET_MEAN_RGB

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Pair:
        size = _size(self.crop_size)
        image, label = random_scale(image, label, rng, self.scale_range)
        image, label = pad_to(image, label, size, self.fill)
        image, label = random_crop(image, label, rng, size)
        if self.flip:
            image, label = random_hflip(image, label, rng)
        if self.rotate_degrees:
            image, label = random_rotate(image, label, rng, self.rotate_degrees, self.fill)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)


@dataclass
class EvalTransform:
    """Identity, or resize so the short side is `resize_short` (image bilinear, label nearest)."""

    resize_short: int | None = None

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None) -> Pair:
        if self.resize_short is None:
            return image, label
        h, w = label.shape
        scale = self.resize_short / min(h, w)
        return resize_pair(image, label, (max(1, round(h * scale)), max(1, round(w * scale))))
