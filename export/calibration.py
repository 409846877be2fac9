"""Images of a checkpoint's own dataset: what export verification and INT8 calibration run on.

Random noise proves little: a trained model labels noise with one class everywhere, so "the
export agrees with PyTorch" would be vacuous. Real-looking images make the model draw several
classes, and quantization ranges calibrated on them are the ranges deployment will see.

The images come from the dataset given on the command line (`--dataset folder --data-root DIR`),
else the training set the checkpoint records (training images: INT8 ranges are not fitted to the
validation images parity scores), else the synthetic validation split with the checkpoint's
number of classes. They are normalised with the checkpoint's metadata, at their own
size for a model with dynamic height/width and letterboxed into the size of a fixed-size one.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sunet_deploy.cli import parse_size
from sunet_deploy.data import DatasetSpec, recorded_spec
from sunet_deploy.data.synthetic import SHAPES
from sunet_deploy.metadata import ModelMetadata
from sunet_deploy.preprocess import Normalization

DATASETS = ("synthetic", "folder", "voc", "cityscapes")
SYNTHETIC_POOL = 10_000
"""Synthetic images are drawn from this many: a handful rarely includes one of the first 50-200,
which parity and training validate on."""
SYNTHETIC_MAX_CLASSES = len(SHAPES) + 1
ODD_SIZE = (75, 113)
"""Height x width of the batch-of-two a dynamic export is also verified on (odd, non-square)."""


@dataclass(frozen=True)
class ImageSource:
    """A dataset named on the command line. `size` is the synthetic images' height x width."""

    kind: str = "synthetic"
    root: Path | None = None
    split: str = "val"
    size: tuple[int, int] = (128, 128)

    def spec(self, num_classes: int) -> DatasetSpec:
        """The dataset for a model of `num_classes`; a synthetic one draws at most 7 classes."""
        if self.kind == "synthetic":
            return DatasetSpec("synthetic", split=self.split, num_samples=SYNTHETIC_POOL, size=tuple(self.size),
                               num_classes=min(num_classes, SYNTHETIC_MAX_CLASSES), seed=0)
        if self.kind == "folder":
            return DatasetSpec("folder", str(self.root), num_classes=num_classes)
        return DatasetSpec(self.kind, str(self.root), self.split)

    def describe(self) -> str:
        if self.kind == "synthetic":
            return "synthetic {} ({}x{})".format(self.split, *self.size)
        return f"{self.kind} {self.split} ({self.root})"


def image_source(meta: ModelMetadata, source: ImageSource | None) -> DatasetSpec:
    """The dataset the images come from: `source` when given, else the training set the checkpoint
    records, else the synthetic validation split."""
    if source is not None:
        return source.spec(meta.num_classes)
    return recorded_spec(meta, "train") or ImageSource().spec(meta.num_classes)


def describe_source(meta: ModelMetadata, source: ImageSource | None) -> str:
    """How reports name the dataset `image_source` picks."""
    if source is None and (recorded := recorded_spec(meta, "train")) is not None:
        return f"{recorded.describe()} (the checkpoint's training set)"
    return (source or ImageSource()).describe()


def dataset_images(meta: ModelMetadata, source: ImageSource | None = None, count: int = 8,
                   seed: int = 0) -> list[np.ndarray]:
    """`count` HxWx3 uint8 RGB images (fewer if the dataset is smaller), a seeded random choice."""
    dataset = image_source(meta, source).build()
    order = np.random.default_rng(seed).permutation(len(dataset))[:count]
    return [dataset[int(i)][0] for i in order]


def letterbox(image: np.ndarray, meta: ModelMetadata, size: tuple[int, int]) -> np.ndarray:
    """One image as a normalised 1x3xHxW input of `size`: scaled to fit, aspect kept, padded at the
    bottom and right with the mean colour, exactly as runtimes.predict letterboxes it."""
    batch, _ = Normalization(tuple(meta.mean), tuple(meta.std), meta.resize_policy, (size, size))(image)
    return batch


def model_inputs(images: list[np.ndarray], meta: ModelMetadata, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """One normalised 1x3xHxW batch per image: sized as the metadata's resize policy says (`size`
    None, a dynamic model), or letterboxed into `size` (a fixed-size model)."""
    if size is not None:
        return [letterbox(image, meta, size) for image in images]
    normalize = Normalization.from_metadata(meta)
    return [normalize(image)[0] for image in images]


def verification_batches(images: list[np.ndarray], meta: ModelMetadata, size: tuple[int, int] | None = None,
                         batch: int | None = None) -> list[np.ndarray]:
    """The batches an export is verified on. Free batch size (`batch` None): every image alone,
    then the first two as one batch (at ODD_SIZE when the height/width are free too). A fixed
    batch size: the images in groups of `batch` (a remainder short of a group is left out)."""
    singles = model_inputs(images, meta, size)
    if batch is not None:
        return [np.concatenate(singles[i:i + batch]) for i in range(0, len(singles) - batch + 1, batch)]
    return singles + [np.concatenate(model_inputs(images[:2], meta, size or ODD_SIZE))]


# ---------------------------------------------------------------- command line


def add_dataset_flags(parser: argparse.ArgumentParser) -> None:
    """--dataset, --data-root, --data-split, --data-size, --verify-images and --seed, shared by the exporters."""
    group = parser.add_argument_group("verification images (and INT8 calibration images)")
    group.add_argument("--dataset", choices=DATASETS,
                       help="dataset the export is verified on (default: the checkpoint's own, else synthetic "
                            "with the checkpoint's classes)")
    group.add_argument("--data-root", type=Path, help="dataset root for folder, voc and cityscapes")
    group.add_argument("--data-split", default="val", help="dataset split (default val)")
    group.add_argument("--data-size", type=parse_size, metavar="HxW", help="synthetic image size (default 128x128)")
    group.add_argument("--verify-images", type=int, default=4, metavar="N",
                       help="images the export is verified on (default 4)")
    group.add_argument("--seed", type=int, default=0, help="seed of the random choice of images (default 0)")


def source_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ImageSource | None:
    """The ImageSource of the flags (None: the checkpoint's own dataset); usage errors through `parser`."""
    if args.verify_images < 1:
        parser.error("--verify-images must be at least 1")
    if args.dataset is None:
        if args.data_root is not None or args.data_size is not None:
            parser.error("--data-root and --data-size need --dataset")
        return None
    if args.dataset != "synthetic" and args.data_root is None:
        parser.error(f"--dataset {args.dataset} needs --data-root")
    return ImageSource(args.dataset, args.data_root, args.data_split, args.data_size or ImageSource.size)
