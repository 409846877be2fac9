"""Image files -> HxWx3 uint8 RGB, turned as their EXIF orientation says; RGB -> PNG bytes."""

from __future__ import annotations

import os

import cv2
import numpy as np
from PIL import Image


class ImageError(ValueError):
    """An image or label file that cannot be used; the message names the file."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)


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


def check_rgb(image: np.ndarray) -> None:
    """Refuse anything but an HxWx3 uint8 RGB image."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")


def encode_png(image: np.ndarray) -> bytes:
    """HxWx3 uint8 RGB -> PNG bytes, lossless: `read_image` of them gives these pixels back."""
    check_rgb(image)
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
