"""A procedural segmentation dataset, the default so that everything runs without a download.

Each object class has its own shape, a preferred hue and a texture. Hues are jittered so far that
neighbouring classes overlap, and backgrounds are cluttered with random colours and strokes, so a
model has to use shape as well as colour. Sample i is generated from (seed, split, i) alone.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..pipeline.palettes import voc_palette

SHAPES = ("ellipse", "rectangle", "triangle", "star", "ring", "cross")
TEXTURES = ("plain", "stripes", "checker", "dots", "gradient", "noise")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
HUE_JITTER = 20  # OpenCV hue units (0-180); class hues are 180 / (num_classes - 1) apart

# The synthetic dataset's defaults, for every command that builds one (train, train.evaluate,
# export.onnx, benchmarks.parity: see sunet_deploy.data.selection).
DEFAULT_SIZE = (128, 128)
DEFAULT_CLASSES = len(SHAPES) + 1
DEFAULT_SEED = 0
DEFAULT_SAMPLES = {"train": 2000, "val": 200, "test": 200}


class SyntheticSegmentation:
    """Random shapes on clutter: (HxWx3 uint8 RGB image, HxW uint8 label), background = class 0."""

    def __init__(self, num_samples: int = DEFAULT_SAMPLES["train"], size: tuple[int, int] = DEFAULT_SIZE,
                 num_classes: int = DEFAULT_CLASSES, seed: int = DEFAULT_SEED, split: str = "train",
                 max_objects: int = 6) -> None:  # fmt: skip
        if not 2 <= num_classes <= DEFAULT_CLASSES:
            raise ValueError(f"num_classes must be in [2, {DEFAULT_CLASSES}], got {num_classes}")
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self.num_samples, self.size, self.seed, self.split = num_samples, tuple(size), seed, split
        self.max_objects = max_objects
        self.classes = ["background", *SHAPES[: num_classes - 1]]
        self.palette = voc_palette(num_classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.num_samples

    def name(self, index: int) -> str:
        return f"synthetic_{self.split}_{index:06d}"

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        index %= self.num_samples
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
        h, w = self.size
        image = _background(rng, h, w)
        label = np.zeros((h, w), dtype=np.uint8)
        grid = np.mgrid[0:h, 0:w].astype(np.float32)
        for _ in range(rng.integers(2, self.max_objects + 1)):
            cls = int(rng.integers(1, self.num_classes))
            mask = _shape_mask(rng, SHAPES[cls - 1], h, w)
            color = _class_color(rng, cls, self.num_classes)
            x, y, bw, bh = cv2.boundingRect(mask)
            window = (slice(y, y + bh), slice(x, x + bw))  # texture only the object's box: speed
            inside = mask[window].astype(bool)
            texture = _texture(rng, TEXTURES[cls - 1], color, grid[:, y : y + bh, x : x + bw])
            image[window][inside] = texture[inside]
            label[window][inside] = cls
        noise = rng.integers(-8, 9, image.shape, dtype=np.int16)
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
        return cv2.GaussianBlur(image, (3, 3), 0.6), label


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    hsv = np.array([[[hue % 180, saturation, value]]], dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _class_color(rng: np.random.Generator, cls: int, num_classes: int) -> np.ndarray:
    hue = (cls - 1) * 180 / (num_classes - 1) + rng.uniform(-HUE_JITTER, HUE_JITTER)
    return _hsv_to_rgb(hue, rng.uniform(110, 255), rng.uniform(110, 255))


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Two random colours mixed by low-frequency noise, plus random strokes and blobs."""
    colors = [_hsv_to_rgb(rng.uniform(0, 180), rng.uniform(0, 160), rng.uniform(40, 230)) for _ in range(2)]
    mix = cv2.resize(rng.random((4, 4), dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    mix = np.clip(mix, 0, 1)[:, :, None]
    image = (colors[0] * mix + colors[1] * (1 - mix)).astype(np.uint8)
    for _ in range(rng.integers(3, 9)):
        color = _hsv_to_rgb(rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(0, 255)).tolist()
        p1, p2 = (rng.integers(0, (w, h)) for _ in range(2))
        if rng.random() < 0.6:
            cv2.line(image, tuple(map(int, p1)), tuple(map(int, p2)), color, int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            cv2.circle(image, tuple(map(int, p1)), int(rng.integers(2, max(3, min(h, w) // 16))), color, -1, cv2.LINE_AA)
    return image


def _polygon(center: np.ndarray, radii: np.ndarray, angle: float) -> np.ndarray:
    theta = angle + np.linspace(0, 2 * math.pi, len(radii), endpoint=False)
    points = center + radii[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return np.round(points).astype(np.int32)


def _shape_mask(rng: np.random.Generator, shape: str, h: int, w: int) -> np.ndarray:
    """A 0/1 uint8 mask of one shape of random size, position, rotation and aspect."""
    r = rng.uniform(0.08, 0.3) * min(h, w)
    center = rng.uniform((0.1 * w, 0.1 * h), (0.9 * w, 0.9 * h))
    angle = rng.uniform(0, 2 * math.pi)
    c = tuple(int(v) for v in np.round(center))
    mask = np.zeros((h, w), dtype=np.uint8)
    if shape == "ellipse":
        axes = (int(r), int(r * rng.uniform(0.5, 0.85)))
        cv2.ellipse(mask, c, axes, math.degrees(angle), 0, 360, 1, -1)
    elif shape == "rectangle":
        box = cv2.boxPoints((c, (2 * r, 2 * r * rng.uniform(0.5, 1.0)), math.degrees(angle)))
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    elif shape == "triangle":
        cv2.fillPoly(mask, [_polygon(center, r * rng.uniform(0.85, 1.15, 3), angle)], 1)
    elif shape == "star":
        outer = 1.4 * r  # thin arms: larger stars keep the class's pixel share near the others'
        radii = np.tile([outer, outer * rng.uniform(0.35, 0.5)], 5)
        cv2.fillPoly(mask, [_polygon(center, radii, angle)], 1)
    elif shape == "ring":
        thickness = max(2, int(r * rng.uniform(0.3, 0.5)))
        cv2.circle(mask, c, int(r - thickness / 2), 1, thickness)
    else:  # cross
        arm = (2 * r, 2 * r * rng.uniform(0.25, 0.4))
        for extra in (0, 90):
            box = cv2.boxPoints((c, arm, math.degrees(angle) + extra))
            cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    return mask


def _texture(rng: np.random.Generator, kind: str, color: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A full-image HxWx3 uint8 texture of one colour, brightness-modulated by the class's pattern."""
    y, x = grid
    period = rng.uniform(4, 10)
    angle = rng.uniform(0, math.pi)
    if kind == "stripes":
        shade = 0.7 + 0.3 * np.sign(np.sin((x * math.cos(angle) + y * math.sin(angle)) * (2 * math.pi / period)))
    elif kind == "checker":
        shade = np.where((x // period + y // period) % 2 == 0, 1.0, 0.6)
    elif kind == "dots":
        shade = np.where(np.sin(x * 2 * math.pi / period) * np.sin(y * 2 * math.pi / period) > 0.5, 0.5, 1.0)
    elif kind == "gradient":
        ramp = x * math.cos(angle) + y * math.sin(angle)
        shade = 0.5 + 0.5 * (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    elif kind == "noise":
        small = rng.random((grid.shape[1] // 4 + 1, grid.shape[2] // 4 + 1), dtype=np.float32)
        shade = 0.55 + 0.45 * cv2.resize(small, grid.shape[:0:-1], interpolation=cv2.INTER_NEAREST)
    else:
        shade = np.ones_like(x)
    return np.clip(color * shade[:, :, None], 0, 255).astype(np.uint8)
