"""Image -> network input and network output -> mask, colour palettes, label PNGs, overlays.

numpy + OpenCV + Pillow only: a process that serves an exported engine must not need torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]  # fmt: skip
CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
    "bicycle",
]  # fmt: skip
_CITYSCAPES_COLORS = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]  # fmt: skip


class ImageError(ValueError):
    """An image or label file that cannot be used; the message names the file."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)


# ---------------------------------------------------------------- reading images


EXIF_ORIENTATION = 0x0112
_ORIENT = {  # EXIF orientation -> how to turn the stored pixels into the image viewers show
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}  # fmt: skip


def exif_orientation(path: str | os.PathLike) -> int:
    """The EXIF orientation tag of an image file (1, the identity, when it has none)."""
    try:
        with Image.open(path) as image:
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError):  # Pillow cannot parse it: OpenCV's decoding will say why
        return 1
    return orientation if orientation in _ORIENT else 1


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read any image OpenCV can decode as HxWx3 uint8 RGB (16-bit scaled, gray replicated, alpha dropped),
    turned as its EXIF orientation says, so that it is the image every viewer shows."""
    return read_oriented_image(path)[0]


def read_oriented_image(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """`read_image`, and the EXIF orientation it applied (1: none)."""
    image = _decode(path)
    orientation = exif_orientation(path)
    return (np.ascontiguousarray(_ORIENT[orientation](image)) if orientation != 1 else image), orientation


def _decode(path: str | os.PathLike) -> np.ndarray:
    if not os.path.isfile(path):
        raise ImageError(path, "no such file")
    data = np.fromfile(path, dtype=np.uint8)  # also handles non-ASCII paths, unlike cv2.imread
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageError(path, "cannot be decoded as an image (corrupt or unsupported format)")
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(path, f"unsupported pixel type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    channels = image.shape[2]
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageError(path, f"unsupported number of channels: {channels}")


def encode_png(image: np.ndarray) -> bytes:
    """HxWx3 uint8 RGB -> PNG bytes, lossless: `read_image` of them gives these pixels back."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


# ---------------------------------------------------------------- size policy


@dataclass(frozen=True)
class SizePolicy:
    """How images are sized before the network: "none", "resize_short:N", "pad_to_multiple:N",
    or both joined by a comma ("resize_short:512,pad_to_multiple:32": resize first, then pad)."""

    resize_short: int | None = None
    pad_multiple: int | None = None

    @classmethod
    def parse(cls, text: "str | SizePolicy") -> "SizePolicy":
        if isinstance(text, SizePolicy):
            return text
        fields: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            if part == "none":
                continue
            key, _, value = part.partition(":")
            names = {"resize_short": "resize_short", "pad_to_multiple": "pad_multiple"}
            if key not in names or not value.isdigit() or int(value) < 1:
                raise ValueError(
                    f"bad size policy {text!r}: expected 'none', 'resize_short:N' or 'pad_to_multiple:N'"
                )
            fields[names[key]] = int(value)
        return cls(**fields)

    def __str__(self) -> str:
        parts = []
        if self.resize_short:
            parts.append(f"resize_short:{self.resize_short}")
        if self.pad_multiple:
            parts.append(f"pad_to_multiple:{self.pad_multiple}")
        return ",".join(parts) or "none"


@dataclass(frozen=True)
class Geometry:
    """What preprocessing did to one image, so the mask can be brought back to its original size.

    The image of `original` (h, w) was resized to `resized` and then padded at the bottom and
    right to `padded`, the size the network saw.
    """

    original: tuple[int, int]
    resized: tuple[int, int]
    padded: tuple[int, int]


def _resize_to(image: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    """cv2.resize to (h, w) for any number of channels (OpenCV handles at most 512 at once)."""
    h, w = size
    if image.ndim == 2 or image.shape[2] <= 512:
        out = cv2.resize(image, (w, h), interpolation=interpolation)
        return out[:, :, None] if image.ndim == 3 and out.ndim == 2 else out
    chunks = [_resize_to(image[:, :, i : i + 512], size, interpolation) for i in range(0, image.shape[2], 512)]
    return np.concatenate(chunks, axis=2)


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


def plan_geometry(size: tuple[int, int], policy: "str | SizePolicy",
                  bounds: tuple[tuple[int, int], tuple[int | None, int | None]] | None = None) -> Geometry:
    """The model's own size policy, then (when the artifact only takes some sizes) a letterbox into `bounds`."""
    geometry = _policy_geometry(size, SizePolicy.parse(policy))
    if bounds is None:
        return geometry
    fitted = fit_geometry(geometry.padded, *bounds)
    if fitted.padded == geometry.padded:
        return geometry
    return fit_geometry(size, *bounds)


def _policy_geometry(size: tuple[int, int], policy: SizePolicy) -> Geometry:
    h, w = size
    resized = (h, w)
    if policy.resize_short:
        scale = policy.resize_short / min(h, w)
        resized = (max(1, round(h * scale)), max(1, round(w * scale)))
    padded = resized
    if policy.pad_multiple:
        m = policy.pad_multiple
        padded = (-(-resized[0] // m) * m, -(-resized[1] // m) * m)
    return Geometry(original=(h, w), resized=resized, padded=padded)


# ---------------------------------------------------------------- image -> input tensor


def to_tensor_input(
    images: Sequence[np.ndarray] | np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    size_policy: "str | SizePolicy" = "none",
    bounds: tuple[tuple[int, int], tuple[int | None, int | None]] | None = None,
) -> tuple[np.ndarray, list[Geometry]]:
    """RGB uint8 image(s) -> (float32 NCHW batch of (x/255 - mean)/std, one Geometry per image).

    Padding is zero in normalised units (the mean colour). `bounds` (min and max height x width)
    letterboxes images into the sizes a fixed-size artifact accepts (see `fit_geometry`). After
    this, all images of a batch must have the same size.
    """
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    mean_arr = np.asarray(mean, dtype=np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(std, dtype=np.float32) * 255.0)
    planes, geometries = [], []
    for image in images:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
        geometry = plan_geometry(image.shape[:2], size_policy, bounds)
        if geometry.resized != geometry.original:
            image = _resize_to(image, geometry.resized, cv2.INTER_LINEAR)
        x = (image.astype(np.float32) - mean_arr) * inv_std
        pad_h, pad_w = geometry.padded[0] - geometry.resized[0], geometry.padded[1] - geometry.resized[1]
        x = np.pad(x, ((0, pad_h), (0, pad_w), (0, 0)))
        planes.append(x.transpose(2, 0, 1))
        geometries.append(geometry)
    sizes = {g.padded for g in geometries}
    if len(sizes) > 1:
        raise ValueError(f"images of one batch have different sizes after the size policy: {sorted(sizes)}")
    return np.ascontiguousarray(np.stack(planes)), geometries


@dataclass(frozen=True)
class Normalization:
    """mean/std (0-1 RGB units) and size policy of a model, usually taken from its metadata."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size_policy: str = "none"
    bounds: tuple[tuple[int, int], tuple[int | None, int | None]] | None = None

    @classmethod
    def from_metadata(cls, meta) -> "Normalization":
        """From a `ModelMetadata` (or anything with mean, std and resize_policy)."""
        return cls(tuple(meta.mean), tuple(meta.std), meta.resize_policy)

    @classmethod
    def for_artifact(cls, info) -> "Normalization":
        """From an `ArtifactInfo`: its metadata, and the image sizes it accepts when they are limited."""
        low, high = info.shape_bounds()
        bounds = None if (low[2:], high[2:]) == ((1, 1), (None, None)) else (low[2:], high[2:])
        return cls(tuple(info.metadata.mean), tuple(info.metadata.std), info.metadata.resize_policy, bounds)

    def __call__(self, images: Sequence[np.ndarray] | np.ndarray) -> tuple[np.ndarray, list[Geometry]]:
        return to_tensor_input(images, self.mean, self.std, self.size_policy, self.bounds)


# ---------------------------------------------------------------- output -> mask


def _as_batch(array: np.ndarray, ndim: int, geometry: Geometry | Sequence[Geometry]):
    single = array.ndim == ndim - 1
    batch = array[None] if single else array
    geometries = [geometry] if isinstance(geometry, Geometry) else list(geometry)
    if batch.ndim != ndim or len(geometries) != len(batch):
        raise ValueError(f"{len(geometries)} geometries for an output of shape {array.shape}")
    return batch, geometries, single


def _index_dtype(num_classes: int) -> type:
    return np.uint8 if num_classes <= 256 else np.int32


def logits_to_mask(logits: np.ndarray, geometry: Geometry | Sequence[Geometry]) -> np.ndarray:
    """(C,H,W) or (N,C,H,W) logits -> index mask(s) at the original image size.

    Logits are cropped to the un-padded region and bilinearly resized back (half-pixel centres,
    as torch's align_corners=False) before the argmax, which is sharper than resizing labels.
    """
    batch, geometries, single = _as_batch(np.asarray(logits), 4, geometry)
    masks = []
    for scores, g in zip(batch, geometries):
        scores = np.ascontiguousarray(scores.transpose(1, 2, 0), dtype=np.float32)
        if scores.shape[:2] != g.padded:  # a model whose output is not at input resolution
            scores = _resize_to(scores, g.padded, cv2.INTER_LINEAR)
        scores = scores[: g.resized[0], : g.resized[1]]
        if g.resized != g.original:
            scores = _resize_to(np.ascontiguousarray(scores), g.original, cv2.INTER_LINEAR)
        masks.append(scores.argmax(axis=2).astype(_index_dtype(batch.shape[1])))
    return masks[0] if single else np.stack(masks)


def labels_to_mask(labels: np.ndarray, geometry: Geometry | Sequence[Geometry]) -> np.ndarray:
    """(H,W) or (N,H,W) class indices (a model with a built-in argmax) -> mask(s) at the original size."""
    batch, geometries, single = _as_batch(np.asarray(labels), 3, geometry)
    dtype = np.uint8 if batch.size == 0 or (batch.min() >= 0 and batch.max() <= 255) else np.int32
    masks = []
    for label, g in zip(batch, geometries):
        label = label.astype(dtype)
        if label.shape != g.padded:
            label = _resize_to(label, g.padded, cv2.INTER_NEAREST)
        label = np.ascontiguousarray(label[: g.resized[0], : g.resized[1]])
        if g.resized != g.original:
            label = _resize_to(label, g.original, cv2.INTER_NEAREST)
        masks.append(label)
    return masks[0] if single else np.stack(masks)


def output_to_mask(output: np.ndarray, kind: str, geometry: Geometry | Sequence[Geometry]) -> np.ndarray:
    """A runtime's output of the given kind ("logits" or "labels") -> mask(s) at the original size."""
    return (labels_to_mask if kind == "labels" else logits_to_mask)(output, geometry)


# ---------------------------------------------------------------- palettes


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: (n, 3) uint8, class bits interleaved into the high colour bits."""
    index = np.arange(n)
    palette = np.zeros((n, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (index >> (3 * shift + channel)) & 1
            palette[:, channel] |= bit << (7 - shift)
    return palette.astype(np.uint8)


def cityscapes_palette() -> np.ndarray:
    """The official colours of the 19 Cityscapes train ids, (19, 3) uint8."""
    return np.array(_CITYSCAPES_COLORS, dtype=np.uint8)


def _full_palette(palette: np.ndarray | Sequence[Sequence[int]], size: int = 256) -> np.ndarray:
    """Palette padded with black to `size` entries, so any index up to size-1 (e.g. 255) has a colour."""
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    full = np.zeros((max(size, len(palette)), 3), dtype=np.uint8)
    full[: len(palette)] = palette
    return full


# ---------------------------------------------------------------- label PNGs and visualisation


def save_palette_png(path: str | os.PathLike, mask: np.ndarray, palette: np.ndarray | Sequence[Sequence[int]]) -> None:
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


def colorize(mask: np.ndarray, palette: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """Index mask -> HxWx3 uint8 RGB; indices beyond the palette (e.g. 255 = ignore) are black."""
    mask = np.asarray(mask)
    if mask.size and mask.min() < 0:
        raise ValueError("mask has negative class indices")
    size = int(mask.max()) + 1 if mask.size else 0
    return _full_palette(palette, size)[mask]


def overlay(image: np.ndarray, mask: np.ndarray, palette: np.ndarray | Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    """Blend the colourised mask over an RGB image: (1 - alpha) * image + alpha * colours."""
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
    return cv2.addWeighted(image, 1.0 - alpha, colorize(mask, palette), alpha, 0.0)
