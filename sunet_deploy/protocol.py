"""The inference protocol: windows with overlap, scales and flips, softmax probabilities averaged.

One definition for every runtime (numpy + OpenCV, torch-free): `segment` drives any `infer`
callable (a runtime's `Runtime.infer`, or a PyTorch model seen as one in train.evaluate) and is
what `runtimes.predict --tile/--scales/--flip`, `train.evaluate --multi-scale` and
`benchmarks.parity --multi-scale` run. The engine itself is `sunet_deploy.tiling`.

Scale s resizes the image so its short side is s * base_size (base_size 0: s times its own short
side). A view (one scale, flipped or not) is covered by windows every `stride` pixels, the last one
flush with the border; windows are never larger than the view unless the artifact needs a fixed
size (then they are padded with the mean colour and the padding cropped off the output). Every
pixel's probability is the plain average over the windows that cover it, then over the views.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from .artifact import ArtifactInfo

Size = tuple[int, int]

WARN_FACTOR = 2
"""predict warns when an image's side exceeds the training crop this many times and no tiling is asked."""


class ProtocolError(ValueError):
    """A protocol that cannot run (bad window, overlap or scale, or one the artifact cannot take)."""


@dataclass(frozen=True)
class Protocol:
    """Scales, flips and sliding windows; `window` None runs each view whole.

    `pad_to` is the smallest input the artifact takes: a window (or whole view) smaller than it is
    padded up to it. `batch` is how many windows go to one inference call.
    """

    scales: tuple[float, ...] = (1.0,)
    base_size: int = 0
    flip: bool = False
    window: Size | None = None
    stride: Size | None = None
    pad_to: Size = (1, 1)
    batch: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if not self.scales or min(self.scales) <= 0:
            raise ProtocolError(f"scales must be > 0, got {' '.join(f'{s:g}' for s in self.scales) or 'none'}")
        if self.batch < 1:
            raise ProtocolError(f"batch must be >= 1, got {self.batch}")
        if self.window is not None:
            if min(self.window) < 1:
                raise ProtocolError(f"window must be at least 1x1 pixels, got {_fmt(self.window)}")
            stride = self.stride or self.window
            if min(stride) < 1:
                overlap = (self.window[0] - stride[0], self.window[1] - stride[1])
                raise ProtocolError(f"overlap {_fmt(overlap)} must be smaller than the window {_fmt(self.window)}")
            object.__setattr__(self, "stride", tuple(stride))

    @property
    def views(self) -> int:
        return len(self.scales) * (2 if self.flip else 1)

    def view_size(self, size: Size, scale: float) -> Size:
        """The size of the image at one scale (rounded as train.evaluate always has)."""
        h, w = size
        factor = scale * (self.base_size / min(h, w) if self.base_size else 1.0)
        return max(1, round(h * factor)), max(1, round(w * factor))

    def describe(self) -> str:
        windows = f"windows {_fmt(self.window)} every {_fmt(self.stride)}" if self.window else "whole views"
        base = f" of a {self.base_size} short side" if self.base_size else ""
        return (f"scales {' '.join(f'{s:g}' for s in self.scales)}{base}, {'with' if self.flip else 'no'} flip, "
                f"{windows}, {self.batch} window(s) per call")  # fmt: skip

    def to_dict(self) -> dict:
        return {"scales": list(self.scales), "base_size": self.base_size, "flip": self.flip,
                "window": list(self.window) if self.window else None,
                "stride": list(self.stride) if self.stride else None, "batch": self.batch}  # fmt: skip


PAPER = Protocol(scales=(0.5, 0.75, 1.0, 1.25), base_size=512, flip=True, window=(512, 512), stride=(342, 342))
"""The paper's Table 5 protocol (VOC): four scales of a 512 short side, flips, 512 windows at stride 342."""


def _fmt(size: Size | None) -> str:
    return "none" if size is None else f"{size[0]}x{size[1]}"


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets covering [0, size) with windows of `window` pixels (one window if it fits)."""
    if window <= 0 or size <= window:
        return [0]
    starts = list(range(0, size - window, stride))
    return starts + [size - window]


def parse_tile(text: str) -> Size:
    """argparse type: '512' -> (512, 512), '384x512' -> (384, 512)."""
    h, sep, w = text.lower().partition("x")
    try:
        size = (int(h), int(w)) if sep else (int(h), int(h))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW, got {text!r}") from None
    if min(size) < 1:
        raise argparse.ArgumentTypeError(f"a tile must be at least 1x1 pixels, got {text!r}")
    return size


def artifact_window(window: Size | None, low: Size, high: tuple[int | None, int | None], crop: int | None) -> Size:
    """The window for an artifact whose inputs range from `low` to `high` (None: unbounded).

    No window asked (`--tile` alone): a fixed-size artifact's own size, else the training crop
    (at most what the artifact takes). A window asked for that the artifact cannot take is an
    error, never silently letterboxed.
    """
    if window is None:
        base = tuple(low) if tuple(low) == tuple(high) else ((crop, crop) if crop else None)
        if base is None and None in high:
            raise ProtocolError("the model records no training crop size; give the window, e.g. --tile 512")
        return tuple(min(b, h) if h else b for b, h in zip(base or high, high))
    too_big = [f"{name} {v} > {hi}" for name, v, hi in zip(("height", "width"), window, high) if hi is not None and v > hi]
    if too_big:
        raise ProtocolError(f"window {_fmt(window)} is larger than the artifact accepts ({', '.join(too_big)}); "
                            f"use --tile {_fmt(tuple(h or v for h, v in zip(high, window)))} or smaller")  # fmt: skip
    return tuple(window)


def default_overlap(window: Size) -> Size:
    """A quarter of the window: every pixel but the image border sees some context on each side."""
    return window[0] // 4, window[1] // 4


def much_larger(size: Size, crop: int | None) -> bool:
    """An image whose side exceeds the training crop WARN_FACTOR times: a whole-image run is risky."""
    return crop is not None and max(size) > WARN_FACTOR * crop


# ---------------------------------------------------------------- command line (predict, parity)

TILE_AUTO = "auto"
DEFAULT_BATCH = 4


def _tile_arg(text: str) -> Size | str:
    return TILE_AUTO if text == TILE_AUTO else parse_tile(text)


def add_protocol_flags(parser: argparse.ArgumentParser, letterbox: bool = False) -> None:
    """--tile, --tile-overlap, --scales, --flip, --batch (and predict's --letterbox)."""
    group = parser.add_argument_group("inference protocol: windows, scales, flips (docs/inference.md)")
    group.add_argument("--tile", nargs="?", const=TILE_AUTO, type=_tile_arg, metavar="SIZE|HxW",
                       help="run windows of SIZE (square) or HxW pixels, blended where they overlap; without a "
                       "size: the artifact's fixed size, else the training crop the model records")  # fmt: skip
    group.add_argument("--tile-overlap", type=int, metavar="PIXELS",
                       help="overlap of neighbouring windows (default: a quarter of the window)")
    group.add_argument("--scales", type=float, nargs="+", metavar="S",
                       help="scales of the image (default: 1); probabilities are averaged over them")
    group.add_argument("--flip", action=argparse.BooleanOptionalAction, help="add left-right flipped views")
    group.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                       help=f"windows per inference call, at most what the artifact takes (default {DEFAULT_BATCH})")
    if letterbox:
        group.add_argument("--letterbox", action="store_true",
                           help="a fixed-size artifact: scale each image to fit and pad it, instead of the default "
                           "windows of the artifact's size (measured worse: docs/inference.md)")  # fmt: skip


def protocol_from_args(args: argparse.Namespace, info: ArtifactInfo) -> Protocol | None:
    """The protocol the flags ask for on this artifact; None: each image whole, in one call.

    An artifact that takes only some sizes gets windows of its size by default (not a letterbox),
    unless --letterbox says otherwise.
    """
    asked = args.tile is not None or bool(args.scales) or bool(args.flip) or args.tile_overlap is not None
    if getattr(args, "letterbox", False):
        if asked:
            raise ProtocolError("--letterbox runs each image whole; it does not combine with --tile, --scales or --flip")
        return None
    if not asked and tuple(info.shape_bounds()[1][2:]) == (None, None):
        return None
    return artifact_protocol(info, args.tile, args.tile_overlap, args.scales, bool(args.flip), args.batch)


def artifact_protocol(info: ArtifactInfo, tile: Size | str | None = None, overlap: int | None = None,
                      scales: tuple[float, ...] | None = None, flip: bool = False,
                      batch: int = DEFAULT_BATCH) -> Protocol:  # fmt: skip
    """The protocol on an artifact: windows sized to what it takes (predict's default for a
    fixed-size artifact when `tile` is None), at most the batch it takes."""
    low, high = info.shape_bounds()
    window = None
    if tile is not None or tuple(high[2:]) != (None, None):
        window = artifact_window(None if tile in (None, TILE_AUTO) else tile, low[2:], high[2:], info.metadata.crop_size)
    batch = min(batch, high[0]) if high[0] else batch
    return Protocol(tuple(scales or (1.0,)), 0, flip, window, window_stride(window, overlap), pad_to=tuple(low[2:]), batch=batch)


def window_stride(window: Size | None, overlap: int | None) -> Size | None:
    """The stride of windows that overlap by `overlap` pixels (None: a quarter of the window)."""
    if window is None:
        return None
    overlaps = default_overlap(window) if overlap is None else (overlap, overlap)
    if min(overlaps) < 0:
        raise ProtocolError(f"--tile-overlap must be >= 0, got {overlap}")
    return window[0] - overlaps[0], window[1] - overlaps[1]
