"""Images larger than memory (torch-free; tifffile and zarr from the `[large]` extra).

    image = open_lazy("slide.ome.tif")                  # HxWx3 uint8 view; slices decode only their tiles
    store = MaskStore.open("out/slide_mask.partial.zarr", image.shape[:2], chunks, job, resume=True)
    for c0 in store.todo(stripe_starts(width, protocol)):
        segment(image, model, protocol, out=store.array, stripes=[c0]); store.finish(c0)
    write_tiff_mask(store.array, "out/slide_mask.tif", palette); write_overview(image, store.array, ...)

The input is a tiled TIFF / BigTIFF / OME-TIFF (tifffile's zarr interface) or a zarr array. The
mask goes, block by block as sunet_deploy.tiling computes it, into a zarr array on disk whose chunks
are those blocks (a band of window rows by a stripe of columns: no chunk is written twice, no two
stripes share one); a marker per finished stripe is what `--resume` reads to skip it. A finished
mask becomes a tiled, compressed palette BigTIFF (tiles in row-major order, read back a band at a
time) or stays a zarr array. The overview is the overlay of every n-th pixel, at most
OVERVIEW_SIDE pixels on a side.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .fileio import atomic_path, atomic_write_bytes
from .pipeline.palettes import overlay

LAZY_SUFFIXES = (".tif", ".tiff", ".zarr")
OVERVIEW_SIDE = 2048
TIFF_TILE = 256
CACHE_PIXELS = 1 << 24  # the largest chunk-aligned block a LazyImage keeps (48 MiB of RGB)
EXTRA_HINT = "pip install 'sunet-deploy[large]' (tifffile, zarr, imagecodecs)"
_DONE = "stripes_done"
_JOB = "sunet_job"


class LargeImageError(ValueError):
    """A large input or output store that cannot be used; one line."""


def _modules() -> tuple[Any, Any]:
    try:
        import tifffile
        import zarr
    except ImportError as exc:
        raise LargeImageError(f"tiled TIFF and zarr images need {EXTRA_HINT}: {exc}") from None
    return tifffile, zarr


def is_lazy(path: str | os.PathLike) -> bool:
    """Read lazily: a .zarr folder, or a tiled or BigTIFF .tif/.tiff (a plain TIFF is read whole, as today)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".zarr":
        return path.is_dir()
    if suffix not in (".tif", ".tiff") or not path.is_file():
        return False
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return bool(tif.is_bigtiff or tif.pages[0].is_tiled)
    except Exception:  # no tifffile, or not a TIFF it reads: the whole-image reader says why
        return False


def mask_suffix(source: str | os.PathLike) -> str:
    return ".zarr" if Path(source).suffix.lower() == ".zarr" else ".tif"


class LazyImage:
    """An HxWx3 uint8 image over a zarr-like array (axes YXS, YX, CYX or SYX): `image[rows, cols]`
    (slices, steps allowed) decodes only the chunks they touch. Gray is replicated, alpha dropped,
    16-bit scaled to 8 as the whole-image reader does."""

    ndim = 3
    dtype = np.dtype(np.uint8)

    def __init__(self, array: Any, axes: str, path: Path, closer: Any = None) -> None:
        if axes not in ("YXS", "YX", "CYX", "SYX"):
            raise LargeImageError(f"{path}: unsupported axes {axes!r} (a 2-D image: YX, YXS, CYX)")
        self.array, self.axes, self.path, self._closer = array, axes, path, closer
        yx = array.shape[1:3] if axes[0] in "CS" else array.shape[:2]
        channels = 1 if axes == "YX" else (array.shape[0] if axes[0] in "CS" else array.shape[2])
        if channels not in (1, 3, 4) or array.dtype not in (np.uint8, np.uint16):
            raise LargeImageError(f"{path}: {channels} channels of {array.dtype}; expected 1, 3 or 4 of uint8/uint16")
        self.shape = (int(yx[0]), int(yx[1]), 3)
        chunks = getattr(array, "chunks", None) or array.shape
        self._chunk = tuple(chunks[1:3]) if axes[0] in "CS" else tuple(chunks[:2])
        self._cached: tuple[int, int, np.ndarray] | None = None

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        """Rows and columns; plain slices are served from the last chunk-aligned block read, which
        the bands of a stripe (overlapping, going down) mostly fall in: each chunk decoded about once."""
        rows, cols = key
        if rows.step not in (None, 1) or cols.step not in (None, 1):
            return self._read(rows, cols)
        (r0, r1, _), (c0, c1, _) = rows.indices(self.shape[0]), cols.indices(self.shape[1])
        cached = self._cached
        if cached is None or not (cached[0] <= r0 and r1 <= cached[0] + cached[2].shape[0]
                                  and cached[1] <= c0 and c1 <= cached[1] + cached[2].shape[1]):  # fmt: skip
            (ch, cw), (h, w) = self._chunk, self.shape[:2]
            a, c = r0 // ch * ch, c0 // cw * cw
            b, d = min(h, -(-r1 // ch) * ch), min(w, -(-c1 // cw) * cw)
            if (b - a) * (d - c) > CACHE_PIXELS:  # chunks too large to keep: decode what is asked
                return self._read(rows, cols)
            block = self._read(slice(a, b), slice(c, d))
            self._cached = cached = (a, c, block)
        a, c, block = cached
        return block[r0 - a : r1 - a, c0 - c : c1 - c]

    def _read(self, rows: slice, cols: slice) -> np.ndarray:
        if self.axes == "YX":
            block = np.asarray(self.array[rows, cols])[:, :, None]
        elif self.axes == "YXS":
            block = np.asarray(self.array[rows, cols])
        else:
            block = np.moveaxis(np.asarray(self.array[:, rows, cols]), 0, -1)
        if block.dtype == np.uint16:
            block = (block.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
        if block.shape[2] == 1:
            return np.repeat(block, 3, axis=2)
        return np.ascontiguousarray(block[:, :, :3])

    def close(self) -> None:
        if self._closer is not None:
            self._closer.close()

    def __enter__(self) -> "LazyImage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_lazy(path: str | os.PathLike) -> LazyImage:
    """The full-resolution image of a TIFF (first series, level 0) or a zarr array (a group: its '0')."""
    tifffile, zarr = _modules()
    path = Path(path)
    if path.suffix.lower() == ".zarr":
        array = zarr.open(str(path), mode="r")
        if not hasattr(array, "shape"):
            array = array["0"]
        axes = "YX" if array.ndim == 2 else ("YXS" if array.shape[-1] in (1, 3, 4) else "CYX")
        return LazyImage(array, axes, path)
    tif = tifffile.TiffFile(path)
    try:
        series = tif.series[0]
        store = series.aszarr(level=0)
        array = zarr.open(store, mode="r")
        axes = series.get_axes(squeeze=True) if hasattr(series, "get_axes") else series.axes
        if len(axes) != array.ndim:
            axes = series.axes
        return LazyImage(array, axes, path, closer=tif)
    except Exception:
        tif.close()
        raise


class MaskStore:
    """One image's mask on disk, a zarr array, plus the stripes finished so far (marker files)."""

    def __init__(self, path: Path, array: Any) -> None:
        self.path, self.array = path, array

    @classmethod
    def open(cls, path: str | os.PathLike, shape: tuple[int, int], chunks: tuple[int, int], job: dict,
             resume: bool) -> "MaskStore":  # fmt: skip
        """Create the store, or (resume) reopen one made for the same `job` (image, model, protocol)."""
        _, zarr = _modules()
        path = Path(path)
        if path.exists():
            if not resume:
                raise LargeImageError(f"{path} exists (an interrupted run): pass --resume to go on, or --overwrite")
            array = zarr.open_array(str(path), mode="r+")
            if array.attrs.get(_JOB) != job:
                raise LargeImageError(f"{path} was started with other settings (model, protocol or image); "
                                      "--overwrite starts again")  # fmt: skip
            return cls(path, array)
        array = zarr.create_array(str(path), shape=shape, chunks=chunks, dtype=np.uint8, fill_value=0)
        array.attrs[_JOB] = job
        (path / _DONE).mkdir()
        return cls(path, array)

    @classmethod
    def attach(cls, path: str | os.PathLike) -> "MaskStore":
        """An existing store, to write stripes into (another process made it)."""
        _, zarr = _modules()
        return cls(Path(path), zarr.open_array(str(path), mode="r+"))

    def todo(self, starts: list[int]) -> list[int]:
        return [c0 for c0 in starts if not (self.path / _DONE / str(c0)).exists()]

    def finish(self, c0: int) -> None:
        """Mark the stripe at column c0 written (after all its chunks are on disk)."""
        (self.path / _DONE / str(c0)).touch()

    def complete(self) -> None:
        """A finished zarr mask: no markers left, the job recorded as complete."""
        shutil.rmtree(self.path / _DONE, ignore_errors=True)
        self.array.attrs["complete"] = True


def zarr_complete(path: str | os.PathLike) -> bool:
    """Whether a zarr mask was finished (MaskStore.complete)."""
    _, zarr = _modules()
    return bool(zarr.open_array(str(path), mode="r").attrs.get("complete"))


def colormap(palette: np.ndarray) -> np.ndarray:
    """A TIFF palette: (3, 256) uint16."""
    cmap = np.zeros((3, 256), dtype=np.uint16)
    cmap[:, : len(palette)] = np.asarray(palette[:256], dtype=np.uint16).T * 257
    return cmap


def write_tiff_mask(mask: Any, path: str | os.PathLike, palette: np.ndarray, tile: int = TIFF_TILE) -> Path:
    """A mask array (anything sliceable) as a tiled, deflate-compressed palette BigTIFF, a band of
    `tile` rows in memory at a time; written beside `path` and renamed over it when complete."""
    tifffile, _ = _modules()
    path = Path(path)
    height, width = mask.shape

    def tiles():
        for r0 in range(0, height, tile):
            band = np.asarray(mask[r0 : r0 + tile])
            for c0 in range(0, width, tile):
                block = np.zeros((tile, tile), dtype=np.uint8)
                part = band[:, c0 : c0 + tile]
                block[: part.shape[0], : part.shape[1]] = part
                yield block

    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=True) as writer:
        writer.write(tiles(), shape=(height, width), dtype=np.uint8, tile=(tile, tile), photometric="palette",
                     colormap=colormap(palette), compression="zlib")  # fmt: skip
    return path


def write_overview(image: Any, mask: Any, palette: np.ndarray, path: str | os.PathLike,
                   side: int = OVERVIEW_SIDE) -> Path:  # fmt: skip
    """The overlay of every n-th pixel of image and mask (at most `side` pixels on a side) as a PNG."""
    height, width = mask.shape
    step = max(1, math.ceil(max(height, width) / side))
    rows = step * 64
    parts = [overlay(image[r0 : r0 + rows : step, ::step], np.asarray(mask[r0 : r0 + rows : step, ::step]), palette)
             for r0 in range(0, height, rows)]  # fmt: skip
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.concatenate(parts), cv2.COLOR_RGB2BGR))
    if not ok:
        raise LargeImageError(f"{path}: the overview could not be encoded")
    return atomic_write_bytes(path, data.tobytes())


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A written mask (TIFF or zarr), whole: tests and small checks."""
    tifffile, zarr = _modules()
    if Path(path).suffix.lower() == ".zarr":
        return np.asarray(zarr.open_array(str(path), mode="r")[:])
    return tifffile.imread(path)


def job_record(shape: tuple[int, int], model: str, protocol: dict, stripe: int) -> dict:
    """What a resumed store must match: JSON-normal (tuples as lists) to compare with its attributes."""
    return json.loads(json.dumps({"shape": list(shape), "model": model, "protocol": protocol, "stripe": stripe}))
