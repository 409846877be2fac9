"""The letterbox into what an artifact accepts, and the pipeline's resizes.

`resize_bilinear` is the one bilinear resize of float data (logits, probabilities, a view's
pixels): half-pixel centres as torch's `interpolate(align_corners=False)`, by explicit indices,
so a block of a resize equals the same pixels of the whole one (`sunet_deploy.tiling` runs on it).
Labels resize by nearest neighbour; a letterbox scales the uint8 image by OpenCV (rounded to
uint8), as its measured masks were made (the float resize moves 0.03 % of their pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Bounds = tuple[tuple[int, int], tuple[int | None, int | None]]
"""(min, max) height x width an artifact accepts; None: no maximum."""


@dataclass(frozen=True)
class Geometry:
    """What preprocessing did to one image, so the mask can be brought back to its original size.

    The image of `original` (h, w) was resized to `resized` and then padded at the bottom and
    right to `padded`, the size the network saw.
    """

    original: tuple[int, int]
    resized: tuple[int, int]
    padded: tuple[int, int]


def fit_geometry(size: tuple[int, int], low: tuple[int, int], high: tuple[int | None, int | None]) -> Geometry:
    """Letterbox `size` into what an artifact accepts: heights and widths between `low` and `high`.

    A size inside the bounds is kept. Otherwise the image is scaled, aspect ratio kept, by the
    largest factor that fits `high` (at least up to `low` where possible), then padded at the bottom
    and right up to `low`. A fixed-size artifact (low == high) gets the classic letterbox.
    """
    h, w = size
    high_h, high_w = (v if v is not None else float("inf") for v in high)
    if low[0] <= h <= high_h and low[1] <= w <= high_w:
        return Geometry(size, size, size)
    scale = min(max(1.0, low[0] / h, low[1] / w), high_h / h, high_w / w)
    resized = (int(min(high_h, max(1, round(h * scale)))), int(min(high_w, max(1, round(w * scale)))))
    return Geometry(size, resized, (max(resized[0], low[0]), max(resized[1], low[1])))


# ---------------------------------------------------------------- the bilinear resize


Coords = tuple[np.ndarray, np.ndarray, np.ndarray]


def linear_coords(in_size: int, out_size: int, start: int, stop: int) -> Coords:
    """Source indices (i0, i1) and weights of i1 for output pixels [start, stop) of a bilinear resize
    from in_size to out_size, as torch's align_corners=False (no antialiasing)."""
    dst = np.arange(start, stop, dtype=np.float64)
    src = np.maximum((dst + 0.5) * (in_size / out_size) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (src - i0).astype(np.float32)


def lerp(x: np.ndarray, axis: int, coords: Coords, offset: int = 0) -> np.ndarray:
    """Interpolate `x` along `axis` at `coords` (`linear_coords`); `x` holds that axis from index `offset` on."""
    i0, i1, frac = coords
    shape = [1] * x.ndim
    shape[axis] = len(frac)
    frac = frac.reshape(shape)
    a, b = np.take(x, i0 - offset, axis=axis), np.take(x, i1 - offset, axis=axis)
    return a + (b.astype(np.float32, copy=False) - a) * frac


def resize_bilinear(x: np.ndarray, size: tuple[int, int], rows: tuple[int, int] | None = None) -> np.ndarray:
    """Rows [r0, r1) (default: all) of `x` (..., H, W) bilinearly resized to `size` (h, w), float32.
    A block of rows equals the same rows of the whole resize, bit for bit."""
    (h, w), (in_h, in_w) = size, x.shape[-2:]
    r0, r1 = rows or (0, h)
    x = x.astype(np.float32, copy=False)
    x = x[..., r0:r1, :] if in_h == h else lerp(x, x.ndim - 2, linear_coords(in_h, h, r0, r1))
    return x if in_w == w else lerp(x, x.ndim - 1, linear_coords(in_w, w, 0, w))


# ---------------------------------------------------------------- the other two (see the module's docstring)


def resize_pixels(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An HxWx3 uint8 image scaled to `size` (h, w) by OpenCV's bilinear: a letterbox's resize."""
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def resize_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An HxW label image resized to `size` (h, w) by nearest neighbour (labels do not blend)."""
    return cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
