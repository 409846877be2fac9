"""Images of a checkpoint's own dataset: what export verification and INT8 calibration run on.

Random noise proves little: a trained model labels noise with one class everywhere, so "the
export agrees with PyTorch" would be vacuous. Real-looking images make the model draw several
classes, and quantization ranges calibrated on them are the ranges deployment will see.

The images come from the training set the checkpoint records (training images: INT8 ranges are
not fitted to the validation images parity scores), changed by the dataset flags every command
shares (`--dataset folder --data-root DIR`, sunet_deploy.data.selection); for a checkpoint that
records none, the synthetic validation split with the checkpoint's number of classes. They are normalised with the checkpoint's metadata, at their own
size for a model with dynamic height/width and letterboxed into the size of a fixed-size one.
"""

from __future__ import annotations

import argparse

import numpy as np

from sunet_deploy.data import DatasetSpec, recorded_spec
from sunet_deploy.data.selection import DatasetChoice, add_dataset_flags, chosen_spec
from sunet_deploy.flags import add_flag
from sunet_deploy.metadata import ModelMetadata
from sunet_deploy.pipeline.normalize import Normalization

SYNTHETIC_POOL = 10_000
"""Synthetic images are drawn from this many when the checkpoint records no dataset: a handful
rarely includes one of the first 50-200, which parity and training validate on."""
ODD_SIZE = (75, 113)
"""Height x width of the batch-of-two a dynamic export is also verified on (odd, non-square)."""


def image_source(meta: ModelMetadata, choice: DatasetChoice | None) -> tuple[DatasetSpec, str]:
    """The dataset the images come from and how reports name it: the training set the checkpoint
    records, changed by the dataset flags (`choice`; None: as recorded), see sunet_deploy.data.selection."""
    spec, note = chosen_spec(choice or DatasetChoice(), meta, "train", SYNTHETIC_POOL)
    recorded = note is None and spec == recorded_spec(meta, "train")
    return spec, spec.describe() + (" (the checkpoint's training set)" if recorded else "")


def dataset_images(meta: ModelMetadata, choice: DatasetChoice | None = None, count: int = 8,
                   seed: int = 0) -> list[np.ndarray]:
    """`count` HxWx3 uint8 RGB images of `image_source` (fewer if it is smaller), a seeded random choice."""
    dataset = image_source(meta, choice)[0].build()
    order = np.random.default_rng(seed).permutation(len(dataset))[:count]
    return [dataset[int(i)][0] for i in order]


def letterbox(image: np.ndarray, meta: ModelMetadata, size: tuple[int, int]) -> np.ndarray:
    """One image as a normalised 1x3xHxW input of `size`: scaled to fit, aspect kept, padded at the
    bottom and right with the mean colour, exactly as runtimes.predict letterboxes it."""
    batch, _ = Normalization(tuple(meta.mean), tuple(meta.std), (size, size))(image)
    return batch


def model_inputs(images: list[np.ndarray], meta: ModelMetadata, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """One normalised 1x3xHxW batch per image: at its own size (`size` None, a dynamic model), or
    letterboxed into `size` (a fixed-size model)."""
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


def add_image_flags(parser: argparse.ArgumentParser) -> None:
    """The dataset flags (sunet_deploy.data.selection), --verify-images and --seed, shared by the exporters."""
    add_dataset_flags(parser, "the verification (and INT8 calibration) images: the training set the checkpoint "
                      "records, changed by these flags (another --dataset: from the flags alone; a checkpoint "
                      f"that records none: synthetic val, {SYNTHETIC_POOL} images)",
                      renamed=("--data-split", "--data-size"))  # fmt: skip
    group = parser.add_argument_group("verification")
    add_flag(group, "--verify-images", default=4, help="images the export is verified on (default 4)")
    add_flag(group, "--seed", default=0, help="seed of the random choice of images (default 0)")


def choice_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> DatasetChoice:
    """The dataset choice of the flags; usage errors through `parser`."""
    if args.verify_images < 1:
        parser.error("--verify-images must be at least 1")
    return DatasetChoice.from_args(args)
