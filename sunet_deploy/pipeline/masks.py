"""The one output-to-mask rule: a network's output -> class indices -> a mask at the image's size.

`class_indices` is the rule everything that turns an output into labels uses (predict, tiling,
evaluation, export verification): logits give their argmax over the class axis (the first
maximum on a tie), a labels output (a graph with a built-in argmax: uint8, int32 or int64) is
taken as it is, and either comes back in `mask_dtype`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .geometry import Geometry, resize_bilinear, resize_nearest

BAND_ROWS = 256
"""Rows of a mask resized at a time: memory follows a band of logits, not the whole image's."""


def mask_dtype(num_classes: int) -> type:
    """The dtype of a mask of `num_classes` classes: uint8 while indices fit a byte (and a palette PNG), else int32."""
    return np.uint8 if num_classes <= 256 else np.int32


def class_indices(output: np.ndarray, kind: str) -> np.ndarray:
    """Logits (..., C, H, W) or labels (..., H, W) as class indices (..., H, W) of `mask_dtype`."""
    output = np.asarray(output)
    if kind == "logits":
        return output.argmax(axis=-3).astype(mask_dtype(output.shape[-3]))
    if kind != "labels":
        raise ValueError(f"output kind must be 'logits' or 'labels', got {kind!r}")
    lowest, highest = (int(output.min()), int(output.max())) if output.size else (0, 0)
    return output.astype(mask_dtype(highest + 1) if lowest >= 0 else np.int32, copy=False)


def _as_batch(array: np.ndarray, ndim: int, geometry: Geometry | Sequence[Geometry]):
    single = array.ndim == ndim - 1
    batch = array[None] if single else array
    geometries = [geometry] if isinstance(geometry, Geometry) else list(geometry)
    if batch.ndim != ndim or len(geometries) != len(batch):
        raise ValueError(f"{len(geometries)} geometries for an output of shape {array.shape}")
    return batch, geometries, single


def logits_to_mask(logits: np.ndarray, geometry: Geometry | Sequence[Geometry]) -> np.ndarray:
    """(C,H,W) or (N,C,H,W) logits -> index mask(s) at the original image size.

    Logits are cropped to the un-padded region and bilinearly resized back before the argmax,
    which is sharper than resizing labels.
    """
    batch, geometries, single = _as_batch(np.asarray(logits), 4, geometry)
    masks = []
    for scores, g in zip(batch, geometries):
        if scores.shape[1:] != g.padded:  # a model whose output is not at input resolution
            scores = resize_bilinear(scores, g.padded)
        scores = scores[:, : g.resized[0], : g.resized[1]]
        if g.resized == g.original:
            masks.append(class_indices(scores, "logits"))
            continue
        h = g.original[0]
        bands = [(r, min(r + BAND_ROWS, h)) for r in range(0, h, BAND_ROWS)]
        masks.append(np.concatenate([class_indices(resize_bilinear(scores, g.original, rows), "logits") for rows in bands]))
    return masks[0] if single else np.stack(masks)


def labels_to_mask(labels: np.ndarray, geometry: Geometry | Sequence[Geometry]) -> np.ndarray:
    """(H,W) or (N,H,W) class indices (a model with a built-in argmax) -> mask(s) at the original size."""
    batch, geometries, single = _as_batch(class_indices(labels, "labels"), 3, geometry)
    masks = []
    for label, g in zip(batch, geometries):
        if label.shape != g.padded:
            label = resize_nearest(label, g.padded)
        label = np.ascontiguousarray(label[: g.resized[0], : g.resized[1]])
        masks.append(resize_nearest(label, g.original) if g.resized != g.original else label)
    return masks[0] if single else np.stack(masks)


def output_to_mask(output: np.ndarray, kind: str, geometry: Geometry | Sequence[Geometry]) -> np.ndarray:
    """A runtime's output of the given kind ("logits" or "labels") -> mask(s) at the original size."""
    return (labels_to_mask if kind == "labels" else logits_to_mask)(output, geometry)
