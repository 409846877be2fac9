"""The one normalisation, (x - 255 mean) / (255 std) in float32, and image(s) -> NCHW network input.

The arithmetic is the C++ runtime's too (runtimes/cpp/src/runtime.cpp), so inputs are bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .geometry import Bounds, Geometry, fit_geometry, resize_pixels
from .images import check_rgb


@dataclass(frozen=True)
class Normalization:
    """mean/std (0-1 RGB units, usually from a model's metadata) and, when the artifact only takes
    some sizes, the bounds images are letterboxed into (see `geometry.fit_geometry`)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bounds: Bounds | None = None

    @classmethod
    def from_metadata(cls, meta) -> "Normalization":
        """From a `ModelMetadata` (or anything with mean and std)."""
        return cls(tuple(meta.mean), tuple(meta.std))

    @classmethod
    def for_artifact(cls, info) -> "Normalization":
        """From an `ArtifactInfo`: its metadata, and the image sizes it accepts when they are limited."""
        low, high = info.shape_bounds()
        bounds = None if (low[2:], high[2:]) == ((1, 1), (None, None)) else (low[2:], high[2:])
        return cls(tuple(info.metadata.mean), tuple(info.metadata.std), bounds)

    def pixels(self, pixels: np.ndarray) -> np.ndarray:
        """...x3 pixel values 0-255 (uint8, or float32 as a resized view's) -> float32 normalised, channels last."""
        mean = np.asarray(self.mean, dtype=np.float32) * 255.0
        inv_std = 1.0 / (np.asarray(self.std, dtype=np.float32) * 255.0)
        return (pixels.astype(np.float32, copy=False) - mean) * inv_std

    def __call__(self, images: Sequence[np.ndarray] | np.ndarray) -> tuple[np.ndarray, list[Geometry]]:
        """RGB uint8 image(s) -> (float32 NCHW batch, one Geometry per image).

        Padding is zero in normalised units (the mean colour). After the letterbox, all images of
        a batch must have the same size.
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        planes, geometries = [], []
        for image in images:
            check_rgb(image)
            size = image.shape[:2]
            geometry = Geometry(size, size, size) if self.bounds is None else fit_geometry(size, *self.bounds)
            if geometry.resized != geometry.original:
                image = resize_pixels(image, geometry.resized)
            pad_h, pad_w = geometry.padded[0] - geometry.resized[0], geometry.padded[1] - geometry.resized[1]
            planes.append(np.pad(self.pixels(image), ((0, pad_h), (0, pad_w), (0, 0))).transpose(2, 0, 1))
            geometries.append(geometry)
        sizes = {g.padded for g in geometries}
        if len(sizes) > 1:
            raise ValueError(f"images of one batch have different sizes: {sorted(sizes)}")
        return np.ascontiguousarray(np.stack(planes)), geometries

