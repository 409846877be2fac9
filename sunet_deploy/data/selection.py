"""Which dataset a checkpoint is scored on (train.evaluate, benchmarks.parity): by default the
validation set that training recorded in the checkpoint; a kind, root, split or class count given
by the user change it.

Synthetic-shape flags may only repeat what the checkpoint recorded: a different value would score
other images than validation did, silently. Checkpoints that record no dataset (written before
training recorded one) take the dataset from the flags, with the defaults evaluation always had.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..metadata import ModelMetadata
from .folder import placeholder_classes, read_class_names
from .spec import DatasetSpec, validation_spec

# The defaults of the synthetic flags before checkpoints recorded their dataset.
LEGACY_SYNTHETIC = {"split": "val", "num_samples": 200, "size": (128, 128), "seed": 0}
# DatasetChoice field: (command-line option, DatasetSpec field)
SYNTHETIC_FLAGS = {"synthetic_samples": ("--synthetic-samples", "num_samples"), "synthetic_size": ("--synthetic-size", "size")}


@dataclass(frozen=True)
class DatasetChoice:
    """What the user said about the dataset; None is 'as recorded'."""

    dataset: str | None = None
    data_root: str | None = None
    split: str | None = None
    num_classes: int | None = None
    synthetic_samples: int | None = None
    synthetic_size: tuple[int, int] | None = None


def evaluation_spec(args: DatasetChoice, meta: ModelMetadata) -> tuple[DatasetSpec, str | None]:
    """The dataset to evaluate on, and a note for checkpoints that record none. `args` may be any
    object with DatasetChoice's attributes (e.g. parsed flags)."""
    recorded = validation_spec(meta)
    kind = "voc" if args.dataset == "voc_aug" else args.dataset  # voc_aug's validation set is VOC's
    if recorded is None:
        spec = _from_flags(args, kind or "synthetic", meta.num_classes)
        return spec, f"records no dataset (older checkpoint); evaluating on {spec.describe()}, from the flags"
    if kind is not None and kind != recorded.kind:
        return _from_flags(args, kind, meta.num_classes), None
    return _changed(recorded, args), None


def _from_flags(args: DatasetChoice, kind: str, num_classes: int) -> DatasetSpec:
    if kind == "synthetic":
        given = {field: getattr(args, attr) for attr, (_, field) in SYNTHETIC_FLAGS.items() if getattr(args, attr)}
        split = {"split": args.split} if args.split else {}
        return DatasetSpec("synthetic", num_classes=num_classes, **{**LEGACY_SYNTHETIC, **given, **split})
    _refuse_synthetic_flags(args, kind)
    if not args.data_root:
        raise ValueError(f"--dataset {kind} needs --data-root")
    if kind == "folder":  # without --num-classes: the names of classes.txt, else the checkpoint's count
        unnamed = read_class_names(args.data_root) is None
        return DatasetSpec("folder", args.data_root, num_classes=args.num_classes or (num_classes if unnamed else None))
    return DatasetSpec(kind, args.data_root, args.split or "val")


def _changed(recorded: DatasetSpec, args: DatasetChoice) -> DatasetSpec:
    """The recorded spec with the root, split or class count the flags give."""
    if recorded.kind == "synthetic":
        for attr, (option, field) in SYNTHETIC_FLAGS.items():
            if getattr(args, attr) not in (None, getattr(recorded, field)):
                raise ValueError(f"{option} contradicts the validation set the checkpoint records ({recorded.describe()}); "
                                 "leave it out, or choose another dataset with --dataset")  # fmt: skip
    else:
        _refuse_synthetic_flags(args, recorded.kind)
    changes = {"root": args.data_root, "split": args.split, "num_classes": args.num_classes}
    return replace(recorded, **{k: v for k, v in changes.items() if v is not None})


def _refuse_synthetic_flags(args: DatasetChoice, kind: str) -> None:
    given = [option for attr, (option, _) in SYNTHETIC_FLAGS.items() if getattr(args, attr) is not None]
    if given:
        raise ValueError(f"{' and '.join(given)}: for synthetic data only, not dataset {kind!r}")


def check_classes(classes: list[str], spec: DatasetSpec, meta: ModelMetadata) -> None:
    """The dataset's classes must be the checkpoint's; unnamed folder classes only the same count."""
    if classes != meta.classes and classes != placeholder_classes(meta.num_classes):
        raise ValueError(f"{spec.describe()} has the classes {_brief(classes)}, the checkpoint {_brief(meta.classes)}")


def _brief(names: list[str]) -> str:
    return f"[{', '.join(names[:6])}{', ...' if len(names) > 6 else ''}] ({len(names)})"
