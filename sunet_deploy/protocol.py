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
from .flags import FLAGS, TILE_AUTO, add_flag, add_renamed

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


# ---------------------------------------------------------------- command line (predict, evaluate, parity)

DEFAULT_BATCH = FLAGS["--tile-batch"].default
PROTOCOL_FLAGS = ("--protocol", "--multi-scale", "--tile", "--tile-overlap", "--scales", "--base-size", "--flip",
                  "--tile-batch")  # fmt: skip


def add_protocol_flags(parser: argparse.ArgumentParser, letterbox: bool = False, batch_is_images: bool = False) -> None:
    """PROTOCOL_FLAGS (sunet_deploy.flags), the same in every command that runs the protocol (and
    predict's --letterbox); the old spellings --window, --stride, and --batch (windows per call, now
    --tile-batch) are refused, the last unless the command's own --batch means images per call."""
    group = parser.add_argument_group("inference protocol: windows, scales, flips (docs/inference.md); any of "
                                      "--protocol, --multi-scale, --tile, --tile-overlap, --scales, --base-size, --flip "
                                      "runs it")  # fmt: skip
    for name in PROTOCOL_FLAGS:
        if name == "--flip":
            add_flag(group, name, action=argparse.BooleanOptionalAction, default=None)
        else:
            add_flag(group, name)
    if letterbox:
        add_flag(group, "--letterbox")
    add_renamed(group, "--window", "--stride", here={} if batch_is_images else {"--batch": "--tile-batch"})


def protocol_asked(args: argparse.Namespace) -> bool:
    """Whether the command line asks for the protocol: any protocol flag given (--no-flip alone does not)."""
    values = (args.protocol, args.tile, args.tile_overlap, args.base_size)
    return args.multi_scale or any(v is not None for v in values) or bool(args.scales) or bool(args.flip)


def protocol_from_args(args: argparse.Namespace, info: ArtifactInfo | None = None,
                       crop_size: int | None = None) -> Protocol | None:  # fmt: skip
    """The protocol the flags ask for; None: each image whole, in one call (no protocol flag given).

    With an artifact (`info`) windows are sized to what it takes, and one that takes only some sizes
    gets windows of its size by default (not a letterbox), unless --letterbox says otherwise. Without
    one (a PyTorch checkpoint), `--tile` alone means windows of `crop_size`.
    """
    asked = protocol_asked(args)
    if getattr(args, "letterbox", False):
        if asked:
            raise ProtocolError("--letterbox runs each image whole; it does not combine with --tile, --scales or --flip")
        return None
    low, high = ((1, 1, 1, 1), (None, None, None, None)) if info is None else info.shape_bounds()
    if not asked and tuple(high[2:]) == (None, None):
        return None
    paper = args.multi_scale or args.protocol == "paper"
    crop = info.metadata.crop_size if info is not None else crop_size
    return _protocol(PAPER if paper else Protocol(), args.tile, args.tile_overlap, args.scales, args.base_size,
                     args.flip, args.tile_batch, low, high, crop)  # fmt: skip


def artifact_protocol(info: ArtifactInfo, tile: Size | str | None = None, overlap: int | None = None,
                      scales: tuple[float, ...] | None = None, flip: bool = False,
                      batch: int = DEFAULT_BATCH) -> Protocol:  # fmt: skip
    """The protocol on an artifact: windows sized to what it takes (predict's default for a
    fixed-size artifact when `tile` is None), at most the batch it takes."""
    low, high = info.shape_bounds()
    return _protocol(Protocol(), tile, overlap, scales, None, flip, batch, low, high, info.metadata.crop_size)


def _protocol(start: Protocol, tile: Size | str | None, overlap: int | None, scales: tuple[float, ...] | None,
              base_size: int | None, flip: bool | None, batch: int, low: tuple, high: tuple,
              crop: int | None) -> Protocol:  # fmt: skip
    """`start` with the settings given (None: start's), windows fitted to inputs from `low` to `high` (N, C, H, W)."""
    window = None
    if tile is not None or start.window is not None or tuple(high[2:]) != (None, None):
        asked = start.window if tile is None else None if tile == TILE_AUTO else tile
        window = artifact_window(asked, low[2:], high[2:], crop)
    if window is not None and tile is None and overlap is None and window == start.window:
        stride = start.stride
    else:
        stride = window_stride(window, overlap)
    return Protocol(tuple(scales or start.scales), start.base_size if base_size is None else base_size,
                    start.flip if flip is None else bool(flip), window, stride, pad_to=tuple(low[2:]),
                    batch=min(batch, high[0]) if high[0] else batch)  # fmt: skip


def window_stride(window: Size | None, overlap: int | None) -> Size | None:
    """The stride of windows that overlap by `overlap` pixels (None: a quarter of the window)."""
    if window is None:
        return None
    overlaps = default_overlap(window) if overlap is None else (overlap, overlap)
    if min(overlaps) < 0:
        raise ProtocolError(f"--tile-overlap must be >= 0, got {overlap}")
    return window[0] - overlaps[0], window[1] - overlaps[1]
