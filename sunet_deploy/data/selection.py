"""One dataset choice for every command that reads images: train, train.evaluate, export.onnx
(verification and INT8 calibration images) and benchmarks.parity.

`add_dataset_flags` gives each parser the same flags with the same meaning (DATASET_FLAGS):

    --dataset KIND  --data-root DIR  --split SPLIT  --num-classes N  --synthetic-samples N  --synthetic-size HxW

`DatasetChoice` is what they said (None: not said). `chosen_spec` turns it into the DatasetSpec a
checkpoint's command builds: the set training recorded in the checkpoint (its validation set to
score on, its training set for export images), changed by the flags; another kind, or a checkpoint
that records none, comes from the flags alone with the synthetic defaults of
`sunet_deploy.data.synthetic`. Training has no checkpoint yet and builds its sets from the same
flags (`train.data.segmentation_specs`).

Synthetic-shape flags may only repeat what the checkpoint recorded: a different value would score
other images than validation did, silently. Torch-free.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields, replace

from ..flags import RENAMED, add_flag, add_renamed  # noqa: F401  (RENAMED: the old spellings, read here by tests)
from ..metadata import ModelMetadata
from .folder import placeholder_classes, read_class_names
from .spec import KINDS, DatasetSpec, recorded_spec, synthetic_spec
from .synthetic import DEFAULT_CLASSES

DATASET_FLAGS = ("--dataset", "--data-root", "--split", "--num-classes", "--synthetic-samples", "--synthetic-size")
# DatasetChoice field: (command-line option, DatasetSpec field)
_SET_NAMES = {"val": "validation", "train": "training"}
SYNTHETIC_FLAGS = {"synthetic_samples": ("--synthetic-samples", "num_samples"), "synthetic_size": ("--synthetic-size", "size")}


@dataclass(frozen=True)
class DatasetChoice:
    """What the user said about the dataset; None is 'as recorded' (or the command's default)."""

    dataset: str | None = None
    data_root: str | None = None
    split: str | None = None
    num_classes: int | None = None
    synthetic_samples: int | None = None
    synthetic_size: tuple[int, int] | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DatasetChoice:
        """The choice of flags parsed by a parser with `add_dataset_flags`."""
        return cls(**{f.name: getattr(args, f.name, None) for f in fields(cls)})


def add_dataset_flags(parser: argparse.ArgumentParser, description: str, default: object = None,
                      renamed: tuple[str, ...] = ()) -> argparse._ArgumentGroup:  # fmt: skip
    """DATASET_FLAGS (as sunet_deploy.flags defines them) in a group of `parser`; `description` says
    what the images are for and what the command takes when a flag is left out. `renamed`: old
    spellings (RENAMED) this command refuses with the new name."""
    group = parser.add_argument_group("dataset", description)
    add_flag(group, "--dataset", choices=KINDS, default=default,
             help=f"dataset kind: {', '.join(KINDS)} (KINDS in sunet_deploy/data/spec.py)")
    add_flag(group, "--data-root", default=default)
    add_flag(group, "--split", default=default)
    add_flag(group, "--num-classes", default=default,
             help=f"classes of a synthetic dataset (2-{DEFAULT_CLASSES}) or of a folder without classes.txt")
    add_flag(group, "--synthetic-samples", default=default)
    add_flag(group, "--synthetic-size", default=default)
    add_renamed(group, *renamed)
    return group


def chosen_spec(choice: DatasetChoice, meta: ModelMetadata, use: str = "val",
                samples: int | None = None) -> tuple[DatasetSpec, str | None]:  # fmt: skip
    """The dataset a checkpoint's command reads, and a note for checkpoints that record none.
    `use`: the recorded set the flags change ("val" to score, "train" for export images);
    `samples`: synthetic images when neither the checkpoint nor --synthetic-samples says how many."""
    recorded = recorded_spec(meta, use)
    kind = choice.dataset and (KINDS[choice.dataset].scored_as or choice.dataset)
    if recorded is None:
        spec = _from_flags(choice, kind or "synthetic", meta.num_classes, samples)
        return spec, f"records no dataset (older checkpoint); using {spec.describe()}, from the flags"
    if kind is not None and kind != recorded.kind:
        return _from_flags(choice, kind, meta.num_classes, samples), None
    return _changed(recorded, choice, use), None


def evaluation_spec(choice: DatasetChoice, meta: ModelMetadata) -> tuple[DatasetSpec, str | None]:
    """The dataset a checkpoint is scored on (train.evaluate, benchmarks.parity)."""
    return chosen_spec(choice, meta, "val")


def _from_flags(choice: DatasetChoice, kind: str, num_classes: int, samples: int | None) -> DatasetSpec:
    if kind == "synthetic":  # at most the classes synthetic images have; check_classes tells a mismatch
        _refuse_root(choice)
        return synthetic_spec(choice.split or "val", choice.num_classes or min(num_classes, DEFAULT_CLASSES),
                              choice.synthetic_samples or samples, choice.synthetic_size)  # fmt: skip
    _refuse_synthetic_flags(choice, kind)
    if not choice.data_root:
        raise ValueError(f"--dataset {kind} needs --data-root")
    if kind == "folder":  # without --num-classes: the names of classes.txt, else the checkpoint's count
        unnamed = read_class_names(choice.data_root) is None
        return DatasetSpec("folder", choice.data_root, num_classes=choice.num_classes or (num_classes if unnamed else None))
    return DatasetSpec(kind, choice.data_root, choice.split or "val")


def _changed(recorded: DatasetSpec, choice: DatasetChoice, use: str) -> DatasetSpec:
    """The recorded spec with the root, split or class count the flags give."""
    if recorded.kind == "synthetic":
        _refuse_root(choice)
        for attr, (option, field) in SYNTHETIC_FLAGS.items():
            if getattr(choice, attr) not in (None, getattr(recorded, field)):
                raise ValueError(f"{option} contradicts the {_SET_NAMES.get(use, use)} set the checkpoint records ({recorded.describe()}); "
                                 "leave it out, or choose another dataset with --dataset")  # fmt: skip
    else:
        _refuse_synthetic_flags(choice, recorded.kind)
    changes = {"root": choice.data_root, "split": choice.split, "num_classes": choice.num_classes}
    return replace(recorded, **{k: v for k, v in changes.items() if v is not None})


def _refuse_root(choice: DatasetChoice) -> None:
    if choice.data_root is not None:
        raise ValueError("--data-root: synthetic data has no root (choose another dataset with --dataset)")


def _refuse_synthetic_flags(choice: DatasetChoice, kind: str) -> None:
    given = [option for attr, (option, _) in SYNTHETIC_FLAGS.items() if getattr(choice, attr) is not None]
    if given:
        raise ValueError(f"{' and '.join(given)}: for synthetic data only, not dataset {kind!r}")


def check_classes(classes: list[str], spec: DatasetSpec, meta: ModelMetadata) -> None:
    """The dataset's classes must be the checkpoint's; unnamed folder classes only the same count."""
    if classes != meta.classes and classes != placeholder_classes(meta.num_classes):
        raise ValueError(f"{spec.describe()} has the classes {_brief(classes)}, the checkpoint {_brief(meta.classes)}")


def _brief(names: list[str]) -> str:
    return f"[{', '.join(names[:6])}{', ...' if len(names) > 6 else ''}] ({len(names)})"
