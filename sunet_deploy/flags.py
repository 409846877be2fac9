"""The flag vocabulary: for each concept one spelling, its meaning, type and default (torch-free).

Every `python -m` command takes the flags it shares with another command from FLAGS, through
`add_flag` or the adders of flags that go together: `sunet_deploy.data.selection.add_dataset_flags`
(the dataset), `sunet_deploy.protocol.add_protocol_flags` (the inference protocol),
`sunet_deploy.options.add_option_flags` (fields of option dataclasses: runtime options, export
recipes, train's config). A command may say more in a flag's help, never change its type.
RENAMED holds the spellings commands used before: `add_renamed` refuses them in one line that
names the new one. tests/test_flags.py lists every command's flags against this table.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cli import parse_size, parse_square_size


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


@dataclass(frozen=True)
class Flag:
    """One flag: `type` parses one value (None: a string; `switch`: a flag that takes no value)."""

    name: str
    help: str
    type: Callable[[str], Any] | None = None
    default: Any = None
    switch: bool = False
    extra: dict = field(default_factory=dict)  # metavar, nargs, choices, const


TILE_AUTO = "auto"
"""--tile without a size: the artifact's fixed size, else the training crop the model records."""


def tile_size(text: str) -> tuple[int, int] | str:
    return TILE_AUTO if text == TILE_AUTO else parse_square_size(text)


_TABLE = (
    # ---- the model
    Flag("--arch", "model architecture (a name of sunet_deploy.models.MODEL_REGISTRY)", extra={"metavar": "ARCH"}),
    Flag("--output-stride", "output stride of the dilated segmentation model: 8, 16 or 32", int, 16,
         extra={"choices": (8, 16, 32)}),
    Flag("--head", "segmentation head: plain (1x1 conv) or degrid (paper section 5.3)", None, "plain",
         extra={"choices": ("plain", "degrid")}),
    Flag("--num-classes", "number of classes, background included", int, extra={"metavar": "N"}),
    # ---- the dataset (sunet_deploy.data.selection.add_dataset_flags)
    Flag("--dataset", "dataset kind (KINDS in sunet_deploy/data/spec.py)", extra={"metavar": "KIND"}),
    Flag("--data-root", "dataset root (VOC root, Cityscapes root, a folder of images/ + masks/); not for synthetic",
         extra={"metavar": "DIR"}),
    Flag("--split", "split of the dataset: train, val, ... (a folder has none)"),
    Flag("--synthetic-samples", "synthetic: number of images", positive_int, extra={"metavar": "N"}),
    Flag("--synthetic-size", "synthetic: image size", parse_size, extra={"metavar": "HxW"}),
    # ---- sizes and batches of inputs
    Flag("--size", "input height x width", parse_size, extra={"metavar": "HxW"}),
    Flag("--batch", "images per inference call (the input's batch dimension)", int, extra={"metavar": "N"}),
    # ---- the inference protocol (sunet_deploy.protocol.add_protocol_flags, docs/inference.md)
    Flag("--protocol", "start from a named protocol: paper = --scales 0.5 0.75 1 1.25 --base-size 512 --flip "
         "--tile 512 --tile-overlap 170 (the paper's Table 5); other protocol flags change one setting of it",
         extra={"choices": ("paper",)}),
    Flag("--multi-scale", "the same as --protocol paper (the paper's multi-scale protocol)", switch=True),
    Flag("--tile", "run windows of SIZE (square) or HxW pixels, blended where they overlap; without a size: the "
         "artifact's fixed size, else the training crop the model records", tile_size,
         extra={"nargs": "?", "const": TILE_AUTO, "metavar": "SIZE|HxW"}),
    Flag("--tile-overlap", "overlap of neighbouring windows in pixels (default: a quarter of the window)", int,
         extra={"metavar": "PIXELS"}),
    Flag("--tile-batch", "windows per inference call, at most what the artifact takes (the masks do not depend on it)",
         int, 4, extra={"metavar": "N"}),
    Flag("--scales", "scales of the image (default: 1); probabilities are averaged over them", float,
         extra={"nargs": "+", "metavar": "S"}),
    Flag("--base-size", "short side at scale 1, in pixels (default: 0, the image's own)", int,
         extra={"metavar": "PIXELS"}),
    Flag("--flip", "add left-right flipped views", switch=True),
    Flag("--letterbox", "a fixed-size artifact: scale each image to fit and pad it, instead of the default windows of "
         "the artifact's size (measured worse: docs/inference.md)", switch=True),
    # ---- running and writing
    Flag("--device", "where to compute: cpu or cuda (auto where a command offers it: cuda if available)"),
    Flag("--threads", "CPU threads", int, extra={"metavar": "N"}),
    Flag("--workers", "data loader worker processes (0: load in the main process)", int, extra={"metavar": "N"}),
    Flag("--seed", "random seed", int),
    Flag("--limit", "use the first N images (0: all)", int, extra={"metavar": "N"}),
    Flag("--output", "where the command writes (its help says: a file or a folder)", Path),
    Flag("--workdir", "folder for intermediate artifacts (exports, engines)", Path),
    Flag("--overwrite", "replace outputs of an earlier run (without it they are refused)", switch=True),
    Flag("--resume", "continue an interrupted run from what it left in its output folder", switch=True),
    Flag("--artifact", "an existing artifact to take as well (repeatable)", extra={"action": "append", "default": []}),
    Flag("--variants", "comma-separated benchmark variant names (benchmarks.harness.variants)"),
    Flag("--argmax", "labels (argmax) out of the model instead of logits", switch=True),
    Flag("--shared-memory", "pass tensors to a Triton server through shared memory: none, system (or cuda)"),
    Flag("--grpc-port", "the Triton server's gRPC port", int),
    Flag("--verify-images", "images an export is verified on", int, extra={"metavar": "N"}),
    # ---- measuring
    Flag("--warmup", "warm-up seconds before each timed measurement", float),
    Flag("--duration", "timed seconds of each measurement, at least", float),
    Flag("--min-iterations", "timed iterations of each measurement, at least", int, extra={"metavar": "N"}),
    Flag("--rounds", "repeat the measurements in this many interleaved rounds", int),
    Flag("--requests", "timed requests of one client, per measurement", int, extra={"metavar": "N"}),
    Flag("--scene", "size of a large synthetic scene made from the dataset's samples", parse_size, extra={"metavar": "HxW"}),
    Flag("--engine", "TensorRT engine for the tensorrt row (default: built by export.tensorrt)", Path),
)
FLAGS: dict[str, Flag] = {flag.name: flag for flag in _TABLE}

RENAMED: dict[str, str] = {
    # the dataset
    "--root": "--data-root", "--data-split": "--split", "--data-size": "--synthetic-size", "--train-split": "--split",
    "--count": "--synthetic-samples", "--classes": "--num-classes",
    # the model
    "--model": "--arch",
    # the inference protocol
    "--window": "--tile", "--stride": "--tile-overlap",
}
"""Spellings some command used before, by their new one; `add_renamed` refuses them in one line.
Renamed per command: `--batch` (windows per call) is now `--tile-batch` in runtimes.predict,
train.evaluate and benchmarks.parity, and `--size` is now `--synthetic-size` in sunet_deploy.data
(elsewhere both keep their meaning: see FLAGS)."""

NOTES = {"--stride": " (the window minus the stride)"}
"""What the new spelling takes where it is not the old value."""


def add_flag(parser, name: str, *, help: str | None = None, short: str | None = None, **overrides) -> argparse.Action:
    """Flag `name` of FLAGS on `parser` (or a group), also spelled `short` (e.g. -o); `help` replaces
    the table's, and `overrides` (default, choices, nargs, metavar, dest, required, const) fit it to
    the command. The type stays."""
    flag = FLAGS[name]
    kwargs: dict[str, Any] = {"help": help or flag.help, "default": flag.default, **flag.extra}
    if flag.switch:
        kwargs.update(action="store_true", default=bool(flag.default))
    elif flag.type is not None:
        kwargs["type"] = flag.type
    kwargs.update(overrides)
    default = kwargs["default"]
    if default not in (None, False, [], argparse.SUPPRESS) and "default" not in kwargs["help"]:
        kwargs["help"] += f" (default: {_shown(default)})"
    if kwargs.get("action") not in (None, "store_true", "store_false") or kwargs.get("nargs") == 0:
        kwargs.pop("type", None)
    return parser.add_argument(*([short] if short else []), name, **kwargs)


def _shown(value) -> str:
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return "x".join(map(str, value))
    if isinstance(value, list):
        return " ".join(_shown(v) for v in value)
    return str(value)


class _Renamed(argparse.Action):
    """An option that was renamed: refused in one line that names the new one."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kw) -> None:
        super().__init__(option_strings, argparse.SUPPRESS, nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is now {self.new}{NOTES.get(option_string, '')}")


def add_renamed(parser, *old: str, here: dict[str, str] | None = None) -> None:
    """Refuse each old spelling in `old` (RENAMED says its new one) and in `here` (old: new, for a
    rename in this command only) with one line that names the new spelling."""
    for name, new in [(name, RENAMED[name]) for name in old] + list((here or {}).items()):
        parser.add_argument(name, action=_Renamed, new=new)


def is_renamed(action: argparse.Action) -> bool:
    """Whether `action` is an old spelling that only refuses itself."""
    return isinstance(action, _Renamed)


def describe() -> str:
    """The table as text: every flag's spelling, type, default and meaning, then the old spellings."""
    rows = [(f.name, "switch" if f.switch else getattr(f.type, "__name__", "str") if f.type else "str",
             "" if f.default is None else str(f.default), f.help) for f in _TABLE]  # fmt: skip
    lines = [f"{name:<20} {kind:<18} {default:<8} {meaning}" for name, kind, default, meaning in rows]
    renamed = [f"{old:<20} is now {new}" for old, new in RENAMED.items()]
    return "\n".join(["flag                 type               default  meaning", *lines, "", "old spellings (refused):",
                      *renamed])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """`python -m sunet_deploy.flags`: print the flag table."""
    from .cli import EXIT_OK, EXIT_STATUS_HELP

    argparse.ArgumentParser(prog="python -m sunet_deploy.flags", description="Print the flag vocabulary every command "
                            "takes its shared flags from.", epilog=EXIT_STATUS_HELP).parse_args(argv)  # fmt: skip
    print(describe())
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
