"""One dataset choice: train, train.evaluate, export.onnx and benchmarks.parity take the same dataset
flags; old spellings are refused naming the new one; a new dataset kind is one registry entry
(the walk-through in docs/seams.md, "Adding a dataset")."""

import argparse
import json
import os
from pathlib import Path

import pytest

import benchmarks.parity
import export.onnx
import train.evaluate
from sunet_deploy.data import KINDS, DatasetKind, SyntheticSegmentation
from sunet_deploy.data.__main__ import write_synthetic_folder
from sunet_deploy.data.base import Sample, SegmentationDataset, check_files_exist, require_dir
from sunet_deploy.data.folder import read_class_names
from sunet_deploy.data.selection import DATASET_FLAGS, RENAMED
from sunet_deploy.pipeline.palettes import voc_palette
from train.__main__ import main as train_main
from train.config import parse_config

TRAIN_ONLY = {"--sbd-root", "--val-root", "--val-split", "--val-synthetic-samples"}
"""train's flags for its second set (validation) and voc_aug's second root: more than the shared ones."""


class _Parsed(Exception):
    """Raised instead of parsing: carries the parser a command built."""


def parser_of(parse, monkeypatch) -> argparse.ArgumentParser:
    """The parser a command's parse function builds, captured when it starts parsing."""

    def capture(self, *args, **kwargs):
        raise _Parsed(self)

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
        with pytest.raises(_Parsed) as caught:
            parse(["checkpoint.safetensors", "-o", "m.onnx"])
    return caught.value.args[0]


PARSERS = {
    "train": parse_config,
    "train.evaluate": lambda argv: train.evaluate.build_parser().parse_args(argv),
    "export.onnx": export.onnx.parse_args,
    "benchmarks.parity": benchmarks.parity.parse_args,
}


def dataset_flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The options --help lists that name a dataset (by their words), each with its action."""
    words = ("data", "root", "split", "synthetic", "classes")
    listed = [a for a in parser._actions if a.help != argparse.SUPPRESS]
    flags = {o: a for a in listed for o in a.option_strings if o.startswith("--") and any(w in o for w in words)}
    help_text = parser.format_help()
    assert all(flag in help_text for flag in flags)
    return flags


def meaning(action: argparse.Action) -> tuple:
    return action.type, action.nargs, tuple(action.choices or ()), action.help


def test_the_commands_list_the_same_dataset_flags(monkeypatch):
    flags = {name: dataset_flags(parser_of(parse, monkeypatch)) for name, parse in PARSERS.items()}
    for name in ("train.evaluate", "export.onnx", "benchmarks.parity"):
        assert sorted(flags[name]) == sorted(DATASET_FLAGS), name
    assert set(flags["train"]) == set(DATASET_FLAGS) | TRAIN_ONLY
    for flag in DATASET_FLAGS:  # the same type, count, choices and help: the same meaning
        assert len({meaning(flags[name][flag]) for name in PARSERS}) == 1, flag


@pytest.mark.parametrize("command, old", [("benchmarks.parity", "--root"), ("export.onnx", "--data-split"),
                                          ("export.onnx", "--data-size"), ("train", "--train-split")])  # fmt: skip
def test_an_old_spelling_is_refused_naming_the_new_one(capsys, command, old):
    with pytest.raises(SystemExit) as exc:
        PARSERS[command](["checkpoint.safetensors", "-o", "m.onnx", old, "x"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: {old} is now {RENAMED[old]}")


def test_old_training_counts_and_keys_are_refused_naming_the_new_ones(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_config(["--synthetic-samples", "16", "4"])
    assert "--val-synthetic-samples" in capsys.readouterr().err.splitlines()[-1]
    (tmp_path / "old.json").write_text(json.dumps({"train_split": "train"}))
    with pytest.raises(ValueError, match="train_split is now split"):
        parse_config(["--config", str(tmp_path / "old.json")])
    (tmp_path / "pair.json").write_text(json.dumps({"synthetic_samples": [16, 4]}))
    with pytest.raises(ValueError, match="val_synthetic_samples"):
        parse_config(["--config", str(tmp_path / "pair.json")])


# ---------------------------------------------------------------- adding a dataset (docs/architecture.md)


class ToySegmentation(SegmentationDataset):
    """`root/<split>/images/*.png` with `root/<split>/masks/*.png` and `root/<split>/classes.txt`."""

    def __init__(self, root: str | os.PathLike, split: str) -> None:
        folder = require_dir(Path(root) / split, "toy split folder")
        samples = [Sample(p.stem, p, folder / "masks" / p.name) for p in sorted((folder / "images").glob("*.png"))]
        check_files_exist(samples)
        classes = read_class_names(folder)
        super().__init__(samples, classes, voc_palette(len(classes)), folder)


def test_a_new_dataset_kind_is_one_registry_entry(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(KINDS, "toy", DatasetKind(("root", "split"), lambda spec: ToySegmentation(spec.root, spec.split)))
    for split, count in (("train", 8), ("val", 2)):
        write_synthetic_folder(SyntheticSegmentation(count, (40, 48), num_classes=3, split=split), tmp_path / "toy" / split)
    run = tmp_path / "run"
    flags = f"--dataset toy --data-root {tmp_path / 'toy'} --arch sunet_tiny --crop-size 32 --batch-size 4 --iterations 2 " \
            f"--val-every 2 --workers 0 --no-progress --out-dir {run}"  # fmt: skip
    assert train_main(flags.split()) == 0
    assert train.evaluate.main([str(run / "best.safetensors"), "--workers", "0", "--output", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["dataset"] == {"kind": "toy", "root": str(tmp_path / "toy"), "split": "val"} and result["images"] == 2
    assert "toy" in capsys.readouterr().out
