"""Colour palettes, label PNGs (palette or grayscale PNGs of class indices), colourised masks, overlays."""

from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from .images import ImageError

Palette = np.ndarray | Sequence[Sequence[int]]


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: (n, 3) uint8, class bits interleaved into the high colour bits."""
    index = np.arange(n)
    palette = np.zeros((n, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (index >> (3 * shift + channel)) & 1
            palette[:, channel] |= bit << (7 - shift)
    return palette.astype(np.uint8)


def _full_palette(palette: Palette, size: int = 256) -> np.ndarray:
    """Palette padded with black to `size` entries, so any index up to size-1 (e.g. 255) has a colour."""
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    full = np.zeros((max(size, len(palette)), 3), dtype=np.uint8)
    full[: len(palette)] = palette
    return full


def save_palette_png(path: str | os.PathLike, mask: np.ndarray, palette: Palette) -> None:
    """Write an index mask as a palette ('P') PNG: pixel values are the class indices."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"a palette PNG holds indices 0-255, mask has {mask.min()}..{mask.max()}")
    image = Image.fromarray(mask.astype(np.uint8))
    image.putpalette(_full_palette(palette)[:256].tobytes())  # makes the 'L' image a 'P' image
    image.save(path, format="PNG")


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """Read a label PNG as HxW uint8 class indices: palette ('P') or grayscale ('L', 16-bit < 256)."""
    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.array(image) if mode in ("P", "L", "I", "I;16") else None
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except (OSError, ValueError) as exc:
        raise ImageError(path, f"cannot be read as a label image ({exc})") from exc
    if array is None:
        raise ImageError(path, f"label image has mode {mode!r}; expected class indices as a palette or grayscale PNG")
    if array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ImageError(path, f"label values {array.min()}..{array.max()} do not fit class indices 0-255")
        array = array.astype(np.uint8)
    return array


def colorize(mask: np.ndarray, palette: Palette) -> np.ndarray:
    """Index mask -> HxWx3 uint8 RGB; indices beyond the palette (e.g. 255 = ignore) are black."""
    mask = np.asarray(mask)
    if mask.size and mask.min() < 0:
        raise ValueError("mask has negative class indices")
    size = int(mask.max()) + 1 if mask.size else 0
    return _full_palette(palette, size)[mask]


def overlay(image: np.ndarray, mask: np.ndarray, palette: Palette, alpha: float = 0.5) -> np.ndarray:
    """Blend the colourised mask over an RGB image: (1 - alpha) * image + alpha * colours."""
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
    return cv2.addWeighted(image, 1.0 - alpha, colorize(mask, palette), alpha, 0.0)
