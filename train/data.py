"""Torch-side data: datasets from the config, resumable sampling, augmentation seeded per sample.

Every training sample's augmentation draws from `numpy.random.default_rng([seed, epoch, index])`,
so what a batch holds depends only on (seed, epoch, position in the epoch): not on worker
processes, not on how often the run was stopped and resumed.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from sunet_deploy.data import DatasetError, DatasetSpec, EvalTransform, TrainTransform
from sunet_deploy.data.folder import IMAGE_SUFFIXES
from sunet_deploy.data.spec import synthetic_spec
from sunet_deploy.data.synthetic import DEFAULT_CLASSES
from sunet_deploy.metadata import IMAGENET_MEAN, IMAGENET_STD
from sunet_deploy.pipeline.images import ImageError, read_image
from sunet_deploy.pipeline.normalize import Normalization

from .config import TrainConfig
from .distributed import Context
from .processes import exit_with, interrupts_deferred



def to_input(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 3xHxW float32, normalised exactly as the deployed runtimes do."""
    batch, _ = Normalization(IMAGENET_MEAN, IMAGENET_STD)(image)
    return torch.from_numpy(batch[0])


# ---------------------------------------------------------------- building datasets


def segmentation_specs(config: TrainConfig) -> tuple[DatasetSpec, DatasetSpec]:
    """The (train, val) datasets of a segmentation config. voc_aug trains on trainaug and validates
    on VOC; a 'folder' dataset validates on the folder --val-root."""
    if config.dataset == "synthetic":
        # The images' seed is synthetic.DEFAULT_SEED; --seed is the model's and the augmentation's.
        classes = config.num_classes or DEFAULT_CLASSES
        return (synthetic_spec(config.split, classes, config.synthetic_samples, config.synthetic_size),
                synthetic_spec(config.val_split, classes, config.val_synthetic_samples, config.synthetic_size))
    root = _required_root(config)
    val_root = config.val_root or root
    if config.dataset == "folder":
        if not config.val_root:
            raise DatasetError("dataset folder needs --val-root: a second images/ + masks/ folder for validation")
        return tuple(DatasetSpec("folder", folder, num_classes=config.num_classes) for folder in (root, val_root))
    if config.dataset == "voc_aug":
        return _voc_aug(root, config.split, config.sbd_root), _voc_aug(val_root, config.val_split, config.sbd_root)
    return DatasetSpec(config.dataset, root, config.split), DatasetSpec(config.dataset, val_root, config.val_split)


def _voc_aug(root: str, split: str, sbd_root: str | None) -> DatasetSpec:
    if split != "train":
        return DatasetSpec("voc", root, split)
    if sbd_root is None:
        raise DatasetError("dataset voc_aug needs --sbd-root (the SBD benchmark_RELEASE folder)")
    return DatasetSpec("voc_aug", root, sbd_root=sbd_root)


def training_datasets(config: TrainConfig) -> tuple:
    """(train, val, specs): the datasets of the config and, for segmentation, the (train, val) specs
    as built, a folder's class count filled in (None for classification)."""
    if config.task == "classification":
        root = _required_root(config)
        train = ClassFolder(root, config.split)
        return train, ClassFolder(config.val_root or root, config.val_split, classes=train.classes), None
    (train, train_spec), (val, val_spec) = (_build(spec) for spec in segmentation_specs(config))
    if val.classes != train.classes:
        raise DatasetError(f"training classes {train.classes} differ from validation classes {val.classes}")
    return train, val, (train_spec, val_spec)


def _build(spec: DatasetSpec) -> tuple:
    dataset = spec.build()
    return dataset, replace(spec, num_classes=dataset.num_classes) if spec.kind == "folder" else spec


def _required_root(config: TrainConfig) -> str:
    if not config.data_root:
        raise DatasetError(f"dataset {config.dataset!r} needs --data-root")
    return config.data_root


# ---------------------------------------------------------------- classification folders


class ClassFolder:
    """ImageNet layout: `root/<split>/<class name>/<image>`; classes are the sorted folder names."""

    def __init__(self, root: str | os.PathLike, split: str, classes: list[str] | None = None) -> None:
        split_dir = Path(root) / split
        if not split_dir.is_dir():
            raise DatasetError(f"classification split folder not found: {split_dir}")
        found = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
        if not found:
            raise DatasetError(f"{split_dir}: no class folders (expected {split_dir}/<class>/<image>)")
        self.classes = classes or found
        unknown = sorted(set(found) - set(self.classes))
        if unknown:
            raise DatasetError(f"{split_dir}: class folders {unknown[:5]} are not training classes")
        self.samples = [(p, self.classes.index(c)) for c in found
                        for p in sorted((split_dir / c).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]  # fmt: skip
        if not self.samples:
            raise DatasetError(f"{split_dir}: no images in the class folders")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        path, target = self.samples[index]
        try:
            return read_image(path), target
        except ImageError as exc:
            raise DatasetError(str(exc)) from exc


def random_resized_crop(image: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Inception-style crop: 8-100% of the area, aspect 3/4-4/3, resized to size x size, random flip."""
    h, w = image.shape[:2]
    for _ in range(10):
        area = h * w * rng.uniform(0.08, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        ch, cw = round(math.sqrt(area / aspect)), round(math.sqrt(area * aspect))
        if 0 < ch <= h and 0 < cw <= w:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            image = image[top : top + ch, left : left + cw]
            break
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return image[:, ::-1] if rng.random() < 0.5 else image


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Resize the short side to size / 0.875, then take the central size x size."""
    h, w = image.shape[:2]
    scale = round(size / 0.875) / min(h, w)
    image = cv2.resize(image, (max(size, round(w * scale)), max(size, round(h * scale))), interpolation=cv2.INTER_LINEAR)
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return image[top : top + size, left : left + size]


# ---------------------------------------------------------------- torch datasets


class TrainSet(Dataset):
    """Training samples addressed by (index, epoch); augmentation seeded by (seed, epoch, index)."""

    def __init__(self, dataset, config: TrainConfig) -> None:
        self.dataset, self.seed, self.task = dataset, config.seed, config.task
        self.crop_size = config.crop_size
        self.transform = TrainTransform(config.crop_size, tuple(config.scale_range), config.rotate_degrees)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, epoch = key
        rng = np.random.default_rng([self.seed, epoch, index])
        image, target = self.dataset[index]
        if self.task == "classification":
            return to_input(random_resized_crop(image, rng, self.crop_size)), target
        image, label = self.transform(image, target, rng)
        return to_input(image), torch.from_numpy(label)


class EvalSet(Dataset):
    """Validation samples at their own size (segmentation, optional short-side resize) or centre crops."""

    def __init__(self, dataset, task: str = "segmentation", resize_short: int | None = None, crop_size: int = 224) -> None:
        self.dataset, self.task, self.crop_size = dataset, task, crop_size
        self.transform = EvalTransform(resize_short)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        if self.task == "classification":
            return to_input(center_crop(image, self.crop_size)), target
        image, label = self.transform(image, target)
        return to_input(image), torch.from_numpy(np.ascontiguousarray(label))


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled by seed + epoch) that yields (index, epoch) and can skip the
    first samples of an epoch, which a resumed run has already trained on."""

    def __init__(self, dataset: Dataset, ctx: Context, seed: int, drop_last: bool = True) -> None:
        super().__init__(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=seed, drop_last=drop_last)
        self.skip = 0

    def start(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        for index in list(super().__iter__())[self.skip :]:
            yield index, self.epoch

    def __len__(self) -> int:
        return self.num_samples - self.skip


def _worker_init(_: int, parent: int) -> None:
    exit_with(parent)
    torch.set_num_threads(1)  # workers only decode and augment; the main process computes
    cv2.setNumThreads(1)


class _Loader(DataLoader):
    """A DataLoader whose batches are received whole: an interrupt waits for the batch in transit.
    Cut while fetching a batch's shared memory from a worker, the worker prints a traceback."""

    def __iter__(self):
        batches = super().__iter__()
        while True:
            with interrupts_deferred():
                batch = next(batches, None)
            if batch is None:
                return
            yield batch


def make_loader(dataset: Dataset, batch_size: int, workers: int, sampler=None, pin: bool = False) -> DataLoader:
    """Persistent workers: the sampler is read in this process at each new epoch, so one loader
    serves the whole run."""
    # Workers come from a fork server, not a fork of this process: forking a process that has
    # already run torch's CPU thread pool can hang the child (seen with torch 2.13 CPU builds).
    # _worker_init ties each worker's life to this process (processes.py says why it must).
    return _Loader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin,
        drop_last=sampler is not None, worker_init_fn=functools.partial(_worker_init, parent=os.getpid()),
        multiprocessing_context="forkserver" if workers else None, persistent_workers=workers > 0,
    )  # fmt: skip


def check_training_set(dataset, ctx: Context, batch_size: int) -> int:
    """Micro-batches per epoch and process; a set too small for one batch is a clear error."""
    per_process = len(dataset) // ctx.world_size
    batches = per_process // batch_size
    if batches == 0:
        raise DatasetError(
            f"training set has {len(dataset)} samples: not enough for one batch of {batch_size} "
            f"on each of {ctx.world_size} process(es)"
        )
    return batches
