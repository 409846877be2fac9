"""One flag vocabulary: every `python -m` command's flags, listed from its own parser, against the
table in sunet_deploy.flags. A concept spelled two ways (a known synonym, an old spelling still
taken) or one spelling that means two things (another type, or a shared flag outside the table) fails."""

from __future__ import annotations

import argparse
import importlib
import re
from collections import defaultdict
from pathlib import Path

import pytest

from sunet_deploy.flags import FLAGS, RENAMED, is_renamed

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("sunet_deploy", "train", "export", "runtimes", "benchmarks")

SYNONYMS = [
    {"--arch", "--model", "--architecture"},
    {"--num-classes", "--classes", "--n-classes"},
    {"--synthetic-samples", "--count", "--samples", "--num-samples"},
    {"--synthetic-size", "--data-size"},
    {"--data-root", "--root"},
    {"--split", "--data-split"},
    {"--tile", "--window", "--window-size"},
    {"--tile-overlap", "--stride", "--overlap"},
    {"--tile-batch", "--window-batch"},
    {"--workdir", "--work-dir"},
    {"--overwrite", "--force"},
    {"--resume", "--continue"},
]
"""Spellings of one concept seen in this project or likely next to it: at most one of each set may be
a live flag of any command (RENAMED adds its old -> new pairs)."""


def commands() -> list[str]:
    """Every `python -m` module: a package's __main__ or a module that runs as a script."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            if path.name == "__main__.py":
                found.append(module.removesuffix(".__main__"))
            elif re.search(r'^if __name__ == "__main__":', path.read_text(), re.M):
                found.append(module)
    return found


class _Captured(BaseException):  # not an Exception: no command's error handling swallows it
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def parser_of(command: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser `command`'s main builds, caught when it starts to parse (nothing runs after)."""
    module = importlib.import_module(f"{command}.__main__" if _is_package(command) else command)

    def capture(self, args=None, namespace=None):
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    try:
        module.main([])
    except _Captured as caught:
        return caught.parser
    raise AssertionError(f"python -m {command}: main() returned without parsing a command line")


def _is_package(command: str) -> bool:
    return (REPO / Path(*command.split(".")) / "__main__.py").is_file()


def long_name(action: argparse.Action) -> str:
    """A flag's name: its first --spelling (-o/--output: --output; --flip/--no-flip: --flip)."""
    return next(name for name in action.option_strings if name.startswith("--"))


def value_kind(action: argparse.Action) -> tuple:
    """What a flag takes: nothing (a switch), or values of one type."""
    if action.nargs == 0:
        return ("switch",)
    return ("value", getattr(action.type, "__name__", action.type))


def all_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's actions and those of its subcommands (`python -m X prepare ...`)."""
    actions = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                actions += all_actions(sub)
    return actions


@pytest.fixture(scope="module")
def table(request) -> dict[str, dict[str, argparse.Action]]:
    """{command: {flag: action}} for every command, old spellings that only refuse themselves left out."""
    monkeypatch = pytest.MonkeyPatch()
    try:
        result = {}
        for command in commands():
            parser = parser_of(command, monkeypatch)
            result[command] = {long_name(action): action for action in all_actions(parser)
                               if action.option_strings and action.dest != "help" and not is_renamed(action)}
        return result
    finally:
        monkeypatch.undo()


def test_every_command_is_found_and_lists_its_flags(table):
    expected = {"train", "train.evaluate", "runtimes.predict", "benchmarks.parity", "benchmarks.latency", "export.onnx",
                "export.tensorrt", "export.aoti", "export.triton", "sunet_deploy.data", "sunet_deploy.models"}
    assert expected <= set(table), f"not found: {expected - set(table)}"
    assert [command for command, flags in table.items() if not flags] == ["sunet_deploy.flags"]  # it prints the table


def test_no_concept_is_spelled_two_ways(table):
    used = defaultdict(set)
    for command, flags in table.items():
        for name in flags:
            used[name].add(command)
    old = sorted(name for name in RENAMED if name in used)
    assert not old, "old spellings still taken: " + ", ".join(f"{n} ({', '.join(sorted(used[n]))}; now {RENAMED[n]})" for n in old)
    groups = SYNONYMS + [{old, new} for old, new in RENAMED.items()]
    twice = [sorted(group & set(used)) for group in groups if len(group & set(used)) > 1]
    assert not twice, "one concept, several spellings: " + "; ".join(
        " and ".join(f"{n} ({', '.join(sorted(used[n]))})" for n in names) for names in twice)


def test_one_spelling_means_one_thing(table):
    kinds = defaultdict(lambda: defaultdict(set))
    for command, flags in table.items():
        for name, action in flags.items():
            kinds[name][value_kind(action)].add(command)
    mixed = {name: dict(by_kind) for name, by_kind in kinds.items() if len(by_kind) > 1}
    assert not mixed, f"flags with two types: {mixed}"
    for name, flag in FLAGS.items():
        for kind, where in kinds.get(name, {}).items():
            expected = ("switch",) if flag.switch else ("value", getattr(flag.type, "__name__", flag.type))
            assert kind == expected, f"{name} in {sorted(where)} takes {kind}, the table says {expected}"
    shared = sorted(name for name, by_kind in kinds.items() if len(set().union(*by_kind.values())) > 1 and name not in FLAGS)
    assert not shared, f"flags of several commands that sunet_deploy.flags does not define: {shared}"


def test_renamed_flags_are_refused_in_one_line_naming_the_new_one(capsys):
    from benchmarks import latency
    from runtimes import predict
    from sunet_deploy.data.__main__ import main as data_main
    from train.evaluate import build_parser

    for call, old, new in [
        (lambda: build_parser().parse_args(["ckpt", "--window", "96"]), "--window", "--tile"),
        (lambda: build_parser().parse_args(["ckpt", "--stride", "64"]), "--stride", "--tile-overlap (the window minus"),
        (lambda: predict.parse_args(["m.onnx", "x.png", "-o", "out", "--batch", "2"]), "--batch", "--tile-batch"),
        (lambda: latency.parse_args(["--model", "sunet_tiny"]), "--model", "--arch"),
        (lambda: data_main(["out", "--count", "3"]), "--count", "--synthetic-samples"),
        (lambda: data_main(["out", "--size", "32x32"]), "--size", "--synthetic-size"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            call()
        assert exit_info.value.code == 2
        assert f"error: {old} is now {new}" in capsys.readouterr().err


def test_evaluate_and_parity_score_the_same_protocol_to_the_last_digit(tmp_path):
    """The same protocol flags mean the same protocol: train.evaluate's mIoU is parity's PyTorch FP32 row."""
    import json

    import torch

    from benchmarks import parity
    from sunet_deploy.checkpoint import save_checkpoint
    from sunet_deploy.data import DatasetSpec
    from sunet_deploy.metadata import ModelMetadata
    from sunet_deploy.models import ModelSpec, build_model
    from train.evaluate import main as evaluate

    spec = DatasetSpec("synthetic", split="val", num_samples=3, size=(40, 48), num_classes=5, seed=0)
    meta = ModelMetadata(model=ModelSpec("sunet_tiny", num_classes=5).to_dict(), classes=spec.build().classes,
                         palette=[[i, i, i] for i in range(5)], training={"dataset": {"val": spec.to_dict()}})
    torch.manual_seed(1)  # a random model that draws two classes, split along borders the protocol moves
    checkpoint = str(save_checkpoint(tmp_path / "tiny.safetensors", build_model(ModelSpec("sunet_tiny", num_classes=5)), meta))
    flags = ["--multi-scale", "--tile", "24", "--tile-overlap", "8", "--base-size", "0"]
    assert evaluate([checkpoint, *flags, "--workers", "0", "--device", "cpu", "--output", str(tmp_path / "eval.json")]) == 0
    assert parity.main([checkpoint, *flags, "--limit", "0", "--threads", "1", "--variants", "pytorch-fp32,pytorch-fp32-channels-last",
                        "--workdir", str(tmp_path / "work"), "--output", str(tmp_path / "parity")]) in (0, 1)  # fmt: skip
    scored = json.loads((tmp_path / "eval.json").read_text())
    report = json.loads((tmp_path / "parity" / "parity.json").read_text())
    assert scored["protocol"] == report["protocol"] and report["protocol"]["window"] == [24, 24]
    assert sum(1 for column in zip(*scored["confusion_matrix"]) if sum(column)) >= 2, "a model drawing one class proves little"
    assert 100 * scored["miou"] == report["reference_miou"]


def test_the_paper_protocol_can_be_asked_of_predict():
    import dataclasses

    from runtimes.predict import parse_args
    from sunet_deploy.artifact import ArtifactInfo
    from sunet_deploy.metadata import ModelMetadata
    from sunet_deploy.protocol import DEFAULT_BATCH, PAPER, Protocol, protocol_from_args

    info = ArtifactInfo(ModelMetadata(model={"arch": "f"}, classes=["a", "b"], palette=[[0, 0, 0]] * 2), "onnx")
    fixed = dataclasses.replace(info, input_shape=(1, 3, 512, 512))

    def protocol(*flags, artifact=info):
        return protocol_from_args(parse_args(["m.onnx", "x.png", "-o", "out", *flags]), artifact)

    paper = dataclasses.replace(PAPER, batch=DEFAULT_BATCH)
    assert protocol() is None and protocol("--protocol", "paper") == protocol("--multi-scale") == paper
    assert protocol("--base-size", "512") == Protocol(base_size=512, batch=DEFAULT_BATCH)
    assert protocol("--protocol", "paper", "--no-flip", "--scales", "1") == dataclasses.replace(paper, scales=(1.0,), flip=False)
    assert protocol("--protocol", "paper", artifact=fixed) == dataclasses.replace(paper, pad_to=(512, 512), batch=1)
