"""Training configuration: one dataclass, filled from recipe defaults, a JSON file, then flags.

Precedence, lowest first: the paper recipe of the task (segmentation or classification), the
config file (`--config demo` or `--config path.json`), the command-line flags. Every field is a
flag (`--crop-size 256`) and a JSON key (`"crop_size": 256`); `--help` lists them all.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from sunet_deploy.cli import EXIT_STATUS_HELP, parse_size
from sunet_deploy.data.selection import DatasetChoice, add_dataset_flags
from sunet_deploy.data.synthetic import DEFAULT_CLASSES, DEFAULT_SAMPLES, DEFAULT_SIZE
from sunet_deploy.options import add_option_flags, option

CONFIG_DIR = Path(__file__).parent / "configs"
TASKS = ("segmentation", "classification")
DEFAULT_WORKERS = 4

# The paper's recipes (docs/model-and-facts.md section 1). Fields left at None take these values.
RECIPES: dict[str, dict] = {
    "segmentation": dict(
        lr=2e-4, momentum=0.95, nesterov=False, weight_decay=1e-4, schedule="cosine",
        bn_momentum=0.01, crop_size=512, batch_size=22, iterations=30000,
    ),
    "classification": dict(
        lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="step",
        bn_momentum=0.1, crop_size=224, batch_size=256, epochs=100,
    ),
}  # fmt: skip


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as torch's DataLoader counts them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


RECIPE = "recipe default"
"""The default --help shows for fields that the task's recipe fills (RECIPES)."""
_opt = option


@dataclass
class TrainConfig:
    # ---- what to train
    task: str = _opt("segmentation", "segmentation, or classification (ImageNet-style pre-training of the backbone)", choices=TASKS)
    arch: str = _opt("sunet64", "model architecture: sunet64, sunet128, sunet7_128, sunet_small, sunet_tiny")
    model_overrides: dict = _opt(None, "JSON object of SUNetConfig fields to change, e.g. '{\"width\": 24}'", parse=json.loads)
    output_stride: int = _opt(16, "output stride of the dilated segmentation model (8, 16 or 32)")
    head: str = _opt("plain", "segmentation head: plain (1x1 conv) or degrid (paper section 5.3)")
    init_backbone: str = _opt(None, "checkpoint whose backbone initialises the model (e.g. best.safetensors of a classification run)")
    # ---- data
    dataset: str = _opt("synthetic", "the training set's kind (DatasetSpec kinds); classification: an ImageNet-style folder")
    data_root: str = _opt(None, "dataset root (VOC root for voc_aug; for classification: a folder holding train/<class>/ and val/<class>/)")
    sbd_root: str = _opt(None, "SBD root (voc_aug only)")
    val_root: str = _opt(None, "root of the validation data if elsewhere (required for 'folder': a second images/ + masks/ folder)")
    split: str = _opt("train", "training split name")
    val_split: str = _opt("val", "validation split name")
    num_classes: int = _opt(None, f"classes of a synthetic or folder dataset (synthetic default {DEFAULT_CLASSES}; others know their classes)")
    synthetic_samples: int = _opt(DEFAULT_SAMPLES["train"], "synthetic dataset: number of training images")
    val_synthetic_samples: int = _opt(DEFAULT_SAMPLES["val"], "synthetic dataset: number of validation images")
    synthetic_size: tuple = _opt(DEFAULT_SIZE, "synthetic dataset: image size HxW (in JSON: \"128x128\" or [128, 128])")
    # ---- augmentation
    crop_size: int = _opt(None, "training crop size (segmentation 512, classification 224)", shown=RECIPE)
    scale_range: list = _opt([0.5, 2.0], "random scale range of the segmentation augmentation", nargs=2, parse=float)
    rotate_degrees: float = _opt(10.0, "random rotation range in degrees (segmentation)")
    val_resize_short: int = _opt(None, "resize validation images so the short side has this size (default: keep)")
    # ---- optimisation
    batch_size: int = _opt(None, "images per optimizer step and process, before accumulation (segmentation 22, classification 256)", shown=RECIPE)
    accumulate: int = _opt(1, "gradient accumulation: micro-batches per optimizer step (the batch is split into this many)")
    iterations: int = _opt(None, "optimizer steps (segmentation default 30000); 0 = use --epochs", shown=RECIPE)
    epochs: int = _opt(None, "epochs, used when --iterations is 0 (classification default 100)", shown=RECIPE)
    lr: float = _opt(None, "base learning rate (segmentation 2e-4 for a pretrained backbone, classification 0.01)", shown=RECIPE)
    momentum: float = _opt(None, "SGD momentum (segmentation 0.95, classification 0.9)", shown=RECIPE)
    nesterov: bool = _opt(None, "Nesterov momentum (classification default)", shown=RECIPE)
    weight_decay: float = _opt(None, "weight decay (segmentation 1e-4, classification 5e-4)", shown=RECIPE)
    schedule: str = _opt(None, "cosine (per iteration, segmentation) or step (divide by --step-gamma every --step-epochs, classification)", choices=("cosine", "step"), shown=RECIPE)
    step_epochs: int = _opt(30, "step schedule: epochs between LR drops")
    step_gamma: float = _opt(0.1, "step schedule: LR factor at each drop")
    warmup_iterations: int = _opt(0, "linear LR warm-up over this many steps")
    head_lr_mult: float = _opt(10.0, "LR multiplier of the segmentation head weights")
    head_bias_lr_mult: float = _opt(20.0, "LR multiplier of the segmentation head biases")
    bn_momentum: float = _opt(None, "BatchNorm momentum, PyTorch convention (segmentation 0.01 for fine-tuning, classification 0.1)", shown=RECIPE)
    freeze_bn: bool = _opt(False, "keep backbone BatchNorm statistics and affine parameters fixed")
    sync_bn: bool = _opt(False, "SyncBatchNorm across processes (distributed GPU runs)")
    amp: bool = _opt(None, "mixed precision (default: on for CUDA, off on CPU)")
    # ---- running
    device: str = _opt("auto", "auto, cpu, cuda")
    workers: int = _opt(None, "data loader worker processes per training process (0 = load in the main process)", shown="4, at most the usable CPUs")
    threads: int = _opt(0, "torch CPU threads (0 = torch's default)")
    seed: int = _opt(0, "seed of the model init, the sampling order and the augmentation")
    out_dir: str = _opt("runs/train", "run folder: checkpoints, metrics.jsonl, curves.png, config.json")
    resume: bool = _opt(False, "continue from <out_dir>/latest_state.safetensors (model, optimizer, schedule, step, RNG)")
    overwrite: bool = _opt(False, "replace the run already in --out-dir (without it, such a folder is refused)")
    val_every: int = _opt(1000, "validate (and save) every this many steps; always at the end")
    checkpoint_every: int = _opt(None, "save the resumable state every this many steps (default: --val-every)")
    log_every: int = _opt(20, "write a metrics line every this many steps")
    stop_at_step: int = _opt(None, "stop after this step, saving the state (a time slice of a longer run; --resume continues)")
    progress: bool = _opt(True, "tqdm progress bar")

    def resolved(self) -> "TrainConfig":
        """A copy with every None filled from the task's recipe and checked."""
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        values = asdict(self)
        for key, value in RECIPES[self.task].items():
            if values[key] is None:
                values[key] = value
        defaults = dict(iterations=0, epochs=0, model_overrides={}, amp=False, checkpoint_every=values["val_every"],
                        workers=min(DEFAULT_WORKERS, usable_cpus()))  # fmt: skip
        for key, value in defaults.items():
            if values[key] is None:
                values[key] = value
        values["synthetic_size"] = _size(values["synthetic_size"])
        config = TrainConfig(**values)
        config.check()
        return config

    def check(self) -> None:
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --out-dir and --overwrite replaces it: choose one")
        if self.iterations <= 0 and self.epochs <= 0:
            raise ValueError("set --iterations or --epochs to a positive number")
        if self.batch_size % self.accumulate:
            raise ValueError(f"--batch-size {self.batch_size} is not divisible by --accumulate {self.accumulate}")
        for name in ("batch_size", "accumulate", "crop_size", "val_every", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not (isinstance(self.synthetic_samples, int) and isinstance(self.val_synthetic_samples, int)):
            raise ValueError(f"synthetic_samples is one number (training images), got {self.synthetic_samples!r}; "
                             "the validation images are val_synthetic_samples (--val-synthetic-samples)")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


FIELDS = {f.name: f for f in fields(TrainConfig)}
DATASET_FIELDS = {f.name for f in fields(DatasetChoice)}
"""Fields whose flags are the dataset flags every command shares (sunet_deploy.data.selection)."""
RENAMED_KEYS = {"train_split": "split"}


def _size(value) -> tuple[int, int]:
    """A synthetic size from a flag (a tuple), JSON ("HxW" or [H, W]) or config.json."""
    try:
        return parse_size(value) if isinstance(value, str) else parse_size("x".join(map(str, value)))
    except (argparse.ArgumentTypeError, TypeError) as exc:
        raise ValueError(f"synthetic_size: {exc}") from exc


def load_config_file(name_or_path: str) -> dict:
    """A JSON object of config fields; a bare name like 'demo' means train/configs/demo.json."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        presets = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
        raise ValueError(f"config file not found: {name_or_path} (built-in configs: {', '.join(presets)})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of config fields")
    renamed = [f"{old} is now {new}" for old, new in RENAMED_KEYS.items() if old in data]
    if renamed:
        raise ValueError(f"{path}: {'; '.join(renamed)}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValueError(f"{path}: unknown config keys {unknown}; known: {', '.join(FIELDS)}")
    return data


def build_parser(prog: str = "python -m train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train a SUNet (segmentation, or classification pre-training of the backbone). "
        "Defaults follow the paper's recipe; 'recipe default' values depend on --task.",
        epilog=EXIT_STATUS_HELP,
    )
    parser.add_argument("--config", help="JSON file of these options (keys with underscores), or a built-in name: "
                        + ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.json"))))  # fmt: skip
    add_dataset_flags(parser, "the training images (the validation images: --val-root, --val-split, "
                      "--val-synthetic-samples); defaults: " + ", ".join(f"{name} {FIELDS[name].default}" for name in
                      ("dataset", "split", "synthetic_samples")) + ", synthetic size {}x{}".format(*DEFAULT_SIZE),
                      default=argparse.SUPPRESS, renamed=("--train-split",))  # fmt: skip
    add_option_flags(parser, [TrainConfig], seen=set(DATASET_FIELDS), negatable=True)
    return parser


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """Recipe defaults < config file < flags, resolved and checked."""
    parser = build_parser()
    namespace, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(namespace, "synthetic_samples") and extra[0].isdigit():
            parser.error("--synthetic-samples takes one number now (training images); give the validation "
                         "images' number with --val-synthetic-samples")  # fmt: skip
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args = vars(namespace)
    values = load_config_file(args.pop("config")) if args.get("config") else {}
    args.pop("config", None)
    values.update(args)
    return TrainConfig(**values).resolved()
