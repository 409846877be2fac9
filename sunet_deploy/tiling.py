"""The protocol's engine: views processed stripe by stripe, band by band, in bounded memory (numpy, torch-free).

    model = InferModel(runtime.infer, runtime.output_kind, num_classes, Normalization(mean, std))
    mask = segment(image, model, Protocol(window=(512, 512), stride=(384, 384), batch=4))

The image is cut into stripes of columns (STRIPE_WINDOWS windows wide by default). Within a stripe,
each view (one scale, flipped or not) is a stream over the view columns that stripe reads: it
resizes the rows of the image one band (a strip of window rows) at a time, only the columns the
windows need, runs the windows of the view's global grid that meet those columns in batches, and
adds their softmax probabilities into a running sum; rows no later window touches are final and
leave the stream, divided by how many windows covered them (a plain average: see docs/inference.md
for why not a tapered weight). The output is assembled block by block too: each band of the
stripe's rows pulls the rows it needs from every view, bilinearly resized back to the image size
(half-pixel centres, as torch's `interpolate(align_corners=False)`), and the argmax of their sum is
that block of the mask. Every pixel sums the same windows in the same order whatever the stripe
width, so results are bit-identical to a whole-width run; windows on a stripe border run once per
stripe they meet. Memory is a few bands of one stripe's probabilities per view, whatever the
image's height and width. The image is read a band of a stripe at a time and the mask written a
block at a time, so both may live on disk (sunet_deploy.bigimage). Resizing by explicit row and
column indices (`pipeline.geometry`'s bilinear resize, not cv2.resize on the whole image) is what
lets a block of a resized image equal the same pixels of the whole resized image. Normalisation,
resize and the argmax are the image pipeline's (`sunet_deploy.pipeline`), the same as a whole-image run's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .pipeline.geometry import lerp, linear_coords, resize_bilinear
from .pipeline.masks import class_indices, mask_dtype
from .pipeline.normalize import Normalization
from .protocol import Protocol, window_starts

Infer = Callable[[np.ndarray], np.ndarray]
ImageSource = Any
"""An HxWx3 uint8 image: a numpy array, or anything with `shape`, `ndim` and numpy slicing that
returns arrays (sunet_deploy.bigimage's lazy TIFF/zarr images: only the rows and columns a band
reads are decoded)."""


@dataclass(frozen=True)
class InferModel:
    """What the engine needs of a runtime: `infer` (float32 NCHW batch -> logits or labels), the
    kind of its output, the number of classes, and the normalisation of the uint8 images it gets
    (None: the images are already normalised, as an evaluation loader's)."""

    infer: Infer
    output_kind: str
    num_classes: int
    normalization: Normalization | None = None

    @classmethod
    def for_uint8(cls, infer: Infer, output_kind: str, num_classes: int, mean, std) -> "InferModel":
        """Mean and std given in 0-1 RGB units (as model metadata records them), images uint8."""
        return cls(infer, output_kind, num_classes, Normalization(tuple(mean), tuple(std)))


def probabilities(out: np.ndarray, kind: str, num_classes: int) -> np.ndarray:
    """A runtime's output (N,C,H,W logits, or N,H,W labels) as N,C,H,W float32 probabilities
    (labels vote: one-hot)."""
    if kind == "labels":
        return np.moveaxis(np.eye(num_classes, dtype=np.float32)[out.astype(np.int64)], -1, 1)
    out = out.astype(np.float32, copy=False)
    e = np.exp(out - out.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class _View:
    """One scale, flipped or not, seen through one stripe of image columns [a, b): rows of its
    probabilities at the image's size, in order, for those columns only.

    The windows are the view's global grid; only those that meet the view columns the stripe reads
    run, over only the image columns they need, so each pixel sums the same windows in the same
    order as a whole-width run (bit-identical) while memory follows the stripe, not the image."""

    def __init__(self, image: np.ndarray, scale: float, flip: bool, protocol: Protocol, model: InferModel,
                 cols: tuple[int, int]) -> None:  # fmt: skip
        self.image, self.flip, self.protocol, self.model = image, flip, protocol, model
        self.size = image.shape[:2]
        self.scaled = protocol.view_size(self.size, scale)
        (hs, ws), w = self.scaled, self.size[1]
        self.window = (min(protocol.window[0], hs), min(protocol.window[1], ws)) if protocol.window else self.scaled
        stride = protocol.stride or self.window
        self.tops = window_starts(hs, self.window[0], stride[0])
        lefts = window_starts(ws, self.window[1], stride[1])
        col_count = np.zeros(ws, dtype=np.float32)
        for left in lefts:
            col_count[left : left + self.window[1]] += 1
        # view columns (as the image is oriented) that the output resize reads for [a, b)
        self.out_cols = linear_coords(ws, w, *cols) if ws != w else None
        need = cols if self.out_cols is None else (int(self.out_cols[0].min()), int(self.out_cols[1].max()) + 1)
        v0, v1 = (ws - need[1], ws - need[0]) if flip else need  # in the network's (mirrored) frame
        self.lefts = [left for left in lefts if left < v1 and left + self.window[1] > v0]
        self.c0, c1 = self.lefts[0], self.lefts[-1] + self.window[1]
        self.col_count = col_count[self.c0 : c1]
        self.first_col = ws - c1 if flip else self.c0  # of the computed columns, as the image is oriented
        self.stripe = cols
        self.in_cols = linear_coords(w, ws, self.first_col, self.first_col + c1 - self.c0) if ws != w else None
        self.image_cols = (self.first_col, self.first_col + c1 - self.c0) if self.in_cols is None else \
            (int(self.in_cols[0].min()), int(self.in_cols[1].max()) + 1)  # fmt: skip
        self._final = self._final_rows()
        self._buf = np.zeros((model.num_classes, 0, c1 - self.c0), dtype=np.float32)
        self._buf_start = 0

    # ---- the image side: rows of the view, normalised, as the network's input
    def _input_rows(self, top: int, count: int) -> np.ndarray:
        h, hs = self.size[0], self.scaled[0]
        c0, c1 = self.image_cols
        if hs == h:
            rows = np.asarray(self.image[top : top + count, c0:c1]).astype(np.float32)
        else:  # only the source rows the resize reads: a lazy image decodes no more
            coords = linear_coords(h, hs, top, top + count)
            r0, r1 = int(coords[0].min()), int(coords[1].max()) + 1
            rows = lerp(np.asarray(self.image[r0:r1, c0:c1]), 0, coords, offset=r0).astype(np.float32, copy=False)
        if self.in_cols is not None:
            rows = lerp(rows, 1, self.in_cols, offset=self.image_cols[0])
        norm = self.model.normalization
        x = (rows if norm is None else norm.pixels(rows)).transpose(2, 0, 1)
        return np.ascontiguousarray(x[:, :, ::-1] if self.flip else x)

    def _band(self, top: int) -> np.ndarray:
        """Summed probabilities of one band of windows: (C, window height, computed columns)."""
        x = self._input_rows(top, self.window[0])
        total = np.zeros((self.model.num_classes, *x.shape[1:]), dtype=np.float32)
        lefts, ww = self.lefts, self.window[1]
        for i in range(0, len(lefts), self.protocol.batch):
            chunk = lefts[i : i + self.protocol.batch]
            probs = self._run([x[:, :, left - self.c0 : left - self.c0 + ww] for left in chunk])
            for left, p in zip(chunk, probs):
                total[:, :, left - self.c0 : left - self.c0 + ww] += p
        return total

    def _run(self, windows: list[np.ndarray]) -> np.ndarray:
        h, w = windows[0].shape[1:]
        ph, pw = max(h, self.protocol.pad_to[0]), max(w, self.protocol.pad_to[1])
        batch = np.zeros((len(windows), 3, ph, pw), dtype=np.float32)  # zero: the mean colour
        for i, window in enumerate(windows):
            batch[i, :, :h, :w] = window
        probs = probabilities(self.model.infer(batch), self.model.output_kind, self.model.num_classes)
        if probs.shape[2:] != (ph, pw):  # a model whose output is not at its input's resolution
            probs = resize_bilinear(probs, (ph, pw))
        return probs[:, :, :h, :w]

    def _final_rows(self) -> Iterator[np.ndarray]:
        """Averaged probabilities of the view, rows in order, each as soon as no window adds to it."""
        c, cw, col_count = self.model.num_classes, len(self.col_count), self.col_count
        start, total, row_count = 0, np.zeros((c, 0, cw), np.float32), np.zeros(0, np.float32)
        for k, top in enumerate(self.tops):
            end = top + self.window[0]
            grow = end - start - total.shape[1]
            if grow > 0:
                total = np.concatenate([total, np.zeros((c, grow, cw), np.float32)], axis=1)
                row_count = np.concatenate([row_count, np.zeros(grow, np.float32)])
            total[:, top - start : end - start] += self._band(top)
            row_count[top - start : end - start] += 1
            done = (self.tops[k + 1] if k + 1 < len(self.tops) else end) - start
            probs = total[:, :done] / (row_count[:done, None] * col_count[None, :])
            yield probs[:, :, ::-1] if self.flip else probs
            start, total, row_count = start + done, total[:, done:], row_count[done:]

    # ---- the output side: rows at the image's size
    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Probabilities of image rows [r0, r1) (C, r1 - r0, b - a); calls must go down the image."""
        h, hs = self.size[0], self.scaled[0]
        coords = linear_coords(hs, h, r0, r1) if hs != h else None
        first, stop = (r0, r1) if coords is None else (int(coords[0].min()), int(coords[1].max()) + 1)
        while self._buf_start + self._buf.shape[1] < stop:
            self._buf = np.concatenate([self._buf, next(self._final)], axis=1)
        self._buf, self._buf_start = self._buf[:, first - self._buf_start :], first
        probs = self._buf[:, : r1 - r0] if coords is None else lerp(self._buf, 1, coords, offset=first)
        if self.out_cols is None:
            a, b = self.stripe[0] - self.first_col, self.stripe[1] - self.first_col
            return probs[:, :, a:b]
        return lerp(probs, 2, self.out_cols, offset=self.first_col)

    def close(self) -> None:
        """Free the buffers now: the stream refers back to the view, a cycle that only the garbage
        collector would otherwise break (one stripe's buffers piling up per stripe until it runs)."""
        self._final.close()
        self._buf = None


STRIPE_WINDOWS = 8
"""Default stripe width, in window widths: each stripe recomputes the windows on its borders, about
one window width of view columns in STRIPE_WINDOWS (docs/inference.md)."""


def stripe_width(image_width: int, protocol: Protocol, stripe_cols: int | None = None) -> int:
    """Image columns per stripe: `stripe_cols`, else STRIPE_WINDOWS windows (whole views: the width)."""
    if stripe_cols is not None:
        if stripe_cols < 1:
            raise ValueError(f"stripe_cols must be >= 1, got {stripe_cols}")
        return stripe_cols
    return STRIPE_WINDOWS * protocol.window[1] if protocol.window else image_width


def stripe_starts(image_width: int, protocol: Protocol, stripe_cols: int | None = None) -> list[int]:
    """First image column of each stripe, in the order probability_bands computes them."""
    return list(range(0, image_width, stripe_width(image_width, protocol, stripe_cols)))


def probability_bands(image: ImageSource, model: InferModel, protocol: Protocol, band_rows: int | None = None,
                      stripe_cols: int | None = None, stripes: Iterable[int] | None = None,
                      ) -> Iterator[tuple[int, int, np.ndarray]]:  # fmt: skip
    """(first row, first column, probabilities (C, rows, columns)) of the image, averaged over every
    view: block after block, down each stripe of columns, stripe after stripe (only the stripes
    starting at the columns `stripes`, when given: every block of a stripe is the same whichever
    stripes run)."""
    if image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    height, width = image.shape[:2]
    step = band_rows or (protocol.window[0] if protocol.window else height)
    stripe = stripe_width(width, protocol, stripe_cols)
    flips = (False, True) if protocol.flip else (False,)
    for c0 in range(0, width, stripe) if stripes is None else stripes:
        cols = (c0, min(width, c0 + stripe))
        views = [_View(image, s, f, protocol, model, cols) for s in protocol.scales for f in flips]
        for r0 in range(0, height, step):
            r1 = min(height, r0 + step)
            total = views[0].rows(r0, r1)
            for view in views[1:]:
                total = total + view.rows(r0, r1)
            yield r0, c0, total / len(views)
        for view in views:
            view.close()


def segment(image: ImageSource, model: InferModel, protocol: Protocol, band_rows: int | None = None,
            stripe_cols: int | None = None, out=None, stripes: Iterable[int] | None = None) -> np.ndarray:  # fmt: skip
    """The class index mask (H, W) of an image under the protocol, computed block by block, written
    into `out` when given (any array with numpy slice assignment: a zarr array on disk)."""
    mask = np.empty(image.shape[:2], dtype=mask_dtype(model.num_classes)) if out is None else out
    for r0, c0, probs in probability_bands(image, model, protocol, band_rows, stripe_cols, stripes):
        mask[r0 : r0 + probs.shape[1], c0 : c0 + probs.shape[2]] = class_indices(probs, "logits")
    return mask


def full_probabilities(image: np.ndarray, model: InferModel, protocol: Protocol, stripe_cols: int | None = None) -> np.ndarray:
    """All of the image's probabilities (C, H, W) at once (tests and small images)."""
    out = np.empty((model.num_classes, *image.shape[:2]), dtype=np.float32)
    for r0, c0, probs in probability_bands(image, model, protocol, stripe_cols=stripe_cols):
        out[:, r0 : r0 + probs.shape[1], c0 : c0 + probs.shape[2]] = probs
    return out
