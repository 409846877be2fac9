"""The protocol's engine: views processed band by band, in bounded memory (numpy, torch-free).

    model = InferModel(runtime.infer, runtime.output_kind, num_classes, mean, std)
    mask = segment(image, model, Protocol(window=(512, 512), stride=(384, 384), batch=4))

Each view (one scale, flipped or not) is a stream: it resizes the rows of the image one band (a
strip of window rows) at a time, runs that band's windows in batches, and adds their softmax
probabilities into a running sum; rows no later window touches are final and leave the stream,
divided by how many windows covered them (a plain average: see docs/inference.md for why not a
tapered weight). The output is assembled band by band too: each band of image rows pulls the
rows it needs from every view, bilinearly resized back to the image size (half-pixel centres,
as torch's `interpolate(align_corners=False)`), and the argmax of their sum is that band of the
mask. Memory is a few bands of probabilities per view, whatever the image height; only the image
and the mask are whole. Resizing by explicit row and column indices (not cv2.resize on the whole
image) is what lets a band of a resized image equal the same rows of the whole resized image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .protocol import Protocol, window_starts

Infer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class InferModel:
    """What the engine needs of a runtime: `infer` (float32 NCHW batch -> logits or labels), the
    kind of its output, the number of classes, and mean/std in the units of the images it gets
    (pixel values 0-255 for uint8 images; 0 and 1 for images already normalised)."""

    infer: Infer
    output_kind: str
    num_classes: int
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @classmethod
    def for_uint8(cls, infer: Infer, output_kind: str, num_classes: int, mean, std) -> "InferModel":
        """Mean and std given in 0-1 RGB units (as model metadata records them), images uint8."""
        return cls(infer, output_kind, num_classes, tuple(255.0 * float(m) for m in mean),
                   tuple(255.0 * float(s) for s in std))  # fmt: skip


def linear_coords(in_size: int, out_size: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and weights of i1 for output pixels [start, stop) of a bilinear resize
    from in_size to out_size, as torch's align_corners=False (no antialiasing)."""
    dst = np.arange(start, stop, dtype=np.float64)
    src = np.maximum((dst + 0.5) * (in_size / out_size) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (src - i0).astype(np.float32)


def _lerp(x: np.ndarray, axis: int, coords: tuple[np.ndarray, np.ndarray, np.ndarray], offset: int = 0) -> np.ndarray:
    i0, i1, frac = coords
    shape = [1] * x.ndim
    shape[axis] = len(frac)
    frac = frac.reshape(shape)
    a, b = np.take(x, i0 - offset, axis=axis), np.take(x, i1 - offset, axis=axis)
    return a + (b.astype(np.float32, copy=False) - a) * frac


def probabilities(out: np.ndarray, kind: str, num_classes: int) -> np.ndarray:
    """A runtime's output (N,C,H,W logits, or N,H,W labels) as N,C,H,W float32 probabilities
    (labels vote: one-hot)."""
    if kind == "labels":
        return np.moveaxis(np.eye(num_classes, dtype=np.float32)[out.astype(np.int64)], -1, 1)
    out = out.astype(np.float32, copy=False)
    e = np.exp(out - out.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class _View:
    """One scale, flipped or not: rows of its probabilities at the image's size, in order."""

    def __init__(self, image: np.ndarray, scale: float, flip: bool, protocol: Protocol, model: InferModel) -> None:
        self.image, self.flip, self.protocol, self.model = image, flip, protocol, model
        self.size = image.shape[:2]
        self.scaled = protocol.view_size(self.size, scale)
        hs, ws = self.scaled
        self.window = (min(protocol.window[0], hs), min(protocol.window[1], ws)) if protocol.window else self.scaled
        stride = protocol.stride or self.window
        self.tops = window_starts(hs, self.window[0], stride[0])
        self.lefts = window_starts(ws, self.window[1], stride[1])
        self.mean = np.asarray(model.mean, dtype=np.float32)
        self.inv_std = 1.0 / np.asarray(model.std, dtype=np.float32)
        self.in_cols = linear_coords(self.size[1], ws, 0, ws) if ws != self.size[1] else None
        self.out_cols = linear_coords(ws, self.size[1], 0, self.size[1]) if ws != self.size[1] else None
        self._final = self._final_rows()
        self._buf = np.zeros((model.num_classes, 0, ws), dtype=np.float32)
        self._buf_start = 0

    # ---- the image side: rows of the view, normalised, as the network's input
    def _input_rows(self, top: int, count: int) -> np.ndarray:
        h, hs = self.size[0], self.scaled[0]
        if hs == h:
            rows = self.image[top : top + count].astype(np.float32)
        else:
            rows = _lerp(self.image, 0, linear_coords(h, hs, top, top + count)).astype(np.float32, copy=False)
        if self.in_cols is not None:
            rows = _lerp(rows, 1, self.in_cols)
        x = ((rows - self.mean) * self.inv_std).transpose(2, 0, 1)
        return np.ascontiguousarray(x[:, :, ::-1] if self.flip else x)

    def _band(self, top: int) -> np.ndarray:
        """Summed probabilities of one band of windows: (C, window height, view width)."""
        x = self._input_rows(top, self.window[0])
        total = np.zeros((self.model.num_classes, *x.shape[1:]), dtype=np.float32)
        lefts = self.lefts
        for i in range(0, len(lefts), self.protocol.batch):
            chunk = lefts[i : i + self.protocol.batch]
            probs = self._run([x[:, :, left : left + self.window[1]] for left in chunk])
            for left, p in zip(chunk, probs):
                total[:, :, left : left + self.window[1]] += p
        return total

    def _run(self, windows: list[np.ndarray]) -> np.ndarray:
        h, w = windows[0].shape[1:]
        ph, pw = max(h, self.protocol.pad_to[0]), max(w, self.protocol.pad_to[1])
        batch = np.zeros((len(windows), 3, ph, pw), dtype=np.float32)  # zero: the mean colour
        for i, window in enumerate(windows):
            batch[i, :, :h, :w] = window
        probs = probabilities(self.model.infer(batch), self.model.output_kind, self.model.num_classes)
        if probs.shape[2:] != (ph, pw):  # a model whose output is not at its input's resolution
            probs = _lerp(_lerp(probs, 2, linear_coords(probs.shape[2], ph, 0, ph)), 3, linear_coords(probs.shape[3], pw, 0, pw))
        return probs[:, :, :h, :w]

    def _final_rows(self) -> Iterator[np.ndarray]:
        """Averaged probabilities of the view, rows in order, each as soon as no window adds to it."""
        c, ws = self.model.num_classes, self.scaled[1]
        col_count = np.zeros(ws, dtype=np.float32)
        for left in self.lefts:
            col_count[left : left + self.window[1]] += 1
        start, total, row_count = 0, np.zeros((c, 0, ws), np.float32), np.zeros(0, np.float32)
        for k, top in enumerate(self.tops):
            end = top + self.window[0]
            grow = end - start - total.shape[1]
            if grow > 0:
                total = np.concatenate([total, np.zeros((c, grow, ws), np.float32)], axis=1)
                row_count = np.concatenate([row_count, np.zeros(grow, np.float32)])
            total[:, top - start : end - start] += self._band(top)
            row_count[top - start : end - start] += 1
            done = (self.tops[k + 1] if k + 1 < len(self.tops) else end) - start
            probs = total[:, :done] / (row_count[:done, None] * col_count[None, :])
            yield probs[:, :, ::-1] if self.flip else probs
            start, total, row_count = start + done, total[:, done:], row_count[done:]

    # ---- the output side: rows at the image's size
    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Probabilities of image rows [r0, r1) (C, r1 - r0, W); calls must go down the image."""
        h, hs = self.size[0], self.scaled[0]
        coords = linear_coords(hs, h, r0, r1) if hs != h else None
        first, stop = (r0, r1) if coords is None else (int(coords[0].min()), int(coords[1].max()) + 1)
        while self._buf_start + self._buf.shape[1] < stop:
            self._buf = np.concatenate([self._buf, next(self._final)], axis=1)
        self._buf, self._buf_start = self._buf[:, first - self._buf_start :], first
        probs = self._buf[:, : r1 - r0] if coords is None else _lerp(self._buf, 1, coords, offset=first)
        return probs if self.out_cols is None else _lerp(probs, 2, self.out_cols)


def probability_bands(image: np.ndarray, model: InferModel, protocol: Protocol,
                      band_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:  # fmt: skip
    """(first row, probabilities (C, rows, W)) of the image, band after band, averaged over every view."""
    if image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    views = [_View(image, s, f, protocol, model) for s in protocol.scales for f in ((False, True) if protocol.flip else (False,))]
    height = image.shape[0]
    step = band_rows or (protocol.window[0] if protocol.window else height)
    for r0 in range(0, height, step):
        r1 = min(height, r0 + step)
        total = views[0].rows(r0, r1)
        for view in views[1:]:
            total = total + view.rows(r0, r1)
        yield r0, total / len(views)


def segment(image: np.ndarray, model: InferModel, protocol: Protocol, band_rows: int | None = None) -> np.ndarray:
    """The class index mask (H, W) of an image under the protocol, computed band by band."""
    mask = np.empty(image.shape[:2], dtype=np.uint8 if model.num_classes <= 256 else np.int32)
    for r0, probs in probability_bands(image, model, protocol, band_rows):
        mask[r0 : r0 + probs.shape[1]] = probs.argmax(axis=0)
    return mask


def full_probabilities(image: np.ndarray, model: InferModel, protocol: Protocol) -> np.ndarray:
    """All of the image's probabilities (C, H, W) at once (tests and small images)."""
    return np.concatenate([p for _, p in probability_bands(image, model, protocol)], axis=1)
