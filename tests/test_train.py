"""`python -m train`: checkpoints, bitwise resume, torchrun on CPU, bad input, NaN, classification."""

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import train.loop
from sunet_deploy.checkpoint import load_checkpoint, load_model, load_tensors
from sunet_deploy.cli import EXIT_FAILED, EXIT_STATUS_HELP, EXIT_USAGE
from sunet_deploy.data import DatasetSpec, SyntheticSegmentation, validation_spec
from sunet_deploy.data.__main__ import write_synthetic_folder
from train import distributed as D
from train.__main__ import main
from train.config import parse_config
from train.data import EvalSet, make_loader
from train.evaluate import main as evaluate_main
from train.loop import Trainer
from factory import records, tiny_args

REPO = Path(__file__).resolve().parents[1]
def state_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_tensors(run_dir / "latest_state.safetensors", "train_state")
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "optimizer."))}


def test_training_writes_loadable_checkpoints_and_logs(tmp_path):
    assert main(tiny_args(tmp_path)) == 0
    out = tmp_path / "run"
    model, ckpt = load_model(out / "best.safetensors")
    assert ckpt.meta.classes[0] == "background" and len(ckpt.meta.palette) == 7 == ckpt.meta.num_classes
    assert ckpt.meta.training["validation"]["miou"] >= 0
    synthetic = dict(kind="synthetic", size=[40, 48], num_classes=7, seed=0)  # the dataset's seed is its default 0
    assert ckpt.meta.training["dataset"] == {"train": {**synthetic, "split": "train", "num_samples": 16},
                                             "val": {**synthetic, "split": "val", "num_samples": 4}}  # fmt: skip
    assert model(torch.zeros(1, 3, 40, 48)).shape == (1, 7, 40, 48)
    events = [r["event"] for r in records(out)]
    assert events.count("train") == 4 and events.count("val") == 2 and events[-1] == "end"
    assert (out / "curves.png").stat().st_size > 1000 and json.loads((out / "config.json").read_text())["lr"] == 0.01
    # evaluation CLI on the same checkpoint, no dataset flags: JSON with the confusion matrix, and the baseline
    assert evaluate_main([str(out / "best.safetensors"), "--workers", "0", "--output", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert np.array(result["confusion_matrix"]).sum() == 4 * 40 * 48
    assert result["miou"] == pytest.approx(records(out)[-2]["miou"])  # same images as validation
    assert result["majority_class_baseline"]["class"] == "background"


def test_stopped_and_resumed_equals_uninterrupted_bitwise(tmp_path):
    # 16 images / micro-batch 2 = 8 micro-batches per epoch; 2 per step: the 6 steps cross an epoch
    common = "--batch-size 4 --accumulate 2 --iterations 6 --val-every 3 --checkpoint-every 1"
    assert main(tiny_args(tmp_path / "a", common)) == 0
    assert main(tiny_args(tmp_path / "b", common + " --stop-at-step 3")) == 0
    assert load_tensors(tmp_path / "b/run/latest_state.safetensors", "train_state")[0]["model.head.0.bias"].shape == (7,)
    assert main(tiny_args(tmp_path / "b", common + " --resume")) == 0
    a, b = state_tensors(tmp_path / "a/run"), state_tensors(tmp_path / "b/run")
    assert a.keys() == b.keys() and any(k.startswith("optimizer.") for k in a)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert [r["step"] for r in records(tmp_path / "b/run") if r["event"] == "train"] == list(range(1, 7))


def test_torchrun_two_cpu_processes_identical_weights(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "train", *tiny_args(tmp_path, "--device cpu --iterations 3 --val-every 3")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    end = records(tmp_path / "run")[-1]
    assert end["event"] == "end" and len(end["replica_parameter_sha256"]) == 2 and end["replicas_identical"]
    model, _ = load_model(tmp_path / "run/best.safetensors")
    assert D.parameters_sha256(model) == end["replica_parameter_sha256"][0]  # the saved weights are those
    assert records(tmp_path / "run")[0]["step"] == 1  # one log, written by rank 0 only


def folder_dataset(root: Path, label: np.ndarray | None = None, image: bool = True) -> str:
    """An images/ + masks/ folder with one 40x48 image (and its label if given), as flags."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    if image:
        cv2.imwrite(str(root / "images" / "x.png"), np.zeros((40, 48, 3), np.uint8))
    if label is not None:
        Image.fromarray(label).save(root / "masks" / "x.png")
    return f"--dataset folder --num-classes 3 --data-root {root} --val-root {root}"


def test_folder_dataset_trains_with_the_classes_of_its_classes_txt(tmp_path):
    for split, count in (("train", 8), ("val", 2)):
        write_synthetic_folder(SyntheticSegmentation(count, (40, 48), num_classes=4, split=split), tmp_path / split)
    folders = f"--dataset folder --data-root {tmp_path / 'train'} --val-root {tmp_path / 'val'}"  # no --num-classes
    assert main(tiny_args(tmp_path, folders + " --iterations 2 --val-every 2")) == 0
    meta = load_checkpoint(tmp_path / "run/best.safetensors").meta
    assert meta.classes == ["background", "ellipse", "rectangle", "triangle"]
    assert validation_spec(meta) == DatasetSpec("folder", str(tmp_path / "val"), num_classes=4)
    assert evaluate_main([str(tmp_path / "run/best.safetensors"), "--workers", "0"]) == 0  # on the val folder
    assert json.loads((tmp_path / "run/best_eval_folder.json").read_text())["images"] == 2


BAD_INPUTS = {
    "missing-root": (lambda p: f"--dataset voc --data-root {p / 'missing'}", "VOC root not found"),
    "missing-split": (lambda p: (p / "voc").mkdir() or f"--dataset voc --data-root {p / 'voc'}", "split file not found.*train.txt"),
    "image-without-label": (lambda p: folder_dataset(p / "f"), "1 label file.*x.png"),
    "empty": (lambda p: folder_dataset(p / "f", image=False), "no samples"),
    "no-root": (lambda p: "--dataset voc", "needs --data-root"),
    "bad-label": (lambda p: folder_dataset(p / "f", np.full((40, 48), 7, np.uint8)) + " --batch-size 1",
                  r"x.png: label values \[7\] outside \[0, 3\) and not 255"),
    "too-few-images": (lambda p: "--batch-size 32", "not enough for one batch"),
    "missing-backbone": (lambda p: f"--init-backbone {p / 'nope.safetensors'}", "nope.safetensors: no such file"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gives_a_clear_error(tmp_path, capsys, case):
    setup, message = BAD_INPUTS[case]
    assert main(tiny_args(tmp_path, setup(tmp_path))) == EXIT_USAGE
    assert re.search(message, capsys.readouterr().err), message


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real_loss = train.loop.segmentation_loss

    def loss_nan_on_third(logits, target):
        calls["n"] += 1
        loss = real_loss(logits, target)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(train.loop, "segmentation_loss", loss_nan_on_third)
    assert main(tiny_args(tmp_path, "--checkpoint-every 1")) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "loss became nan at step 3" in err and "latest_state.safetensors kept unchanged" in err
    assert json.loads(load_tensors(tmp_path / "run/latest_state.safetensors", "train_state")[1])["progress"]["step"] == 2
    assert records(tmp_path / "run")[-1]["event"] == "error"


def write_class_folders(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(4):
                image = np.clip(np.array(colour) + rng.integers(-40, 40, (36, 44, 3)), 0, 255).astype(np.uint8)
                cv2.imwrite(str(root / split / f"c{c}" / f"{i}.jpg"), image)


def test_classification_pretraining_feeds_segmentation_backbone(tmp_path):
    write_class_folders(tmp_path / "imagenet")
    cls_args = tiny_args(tmp_path, f"--task classification --dataset folder --data-root {tmp_path / 'imagenet'} "
                                   "--crop-size 32 --iterations 3 --val-every 3")  # fmt: skip
    assert main(cls_args) == 0
    best = tmp_path / "run/best.safetensors"
    classifier = load_checkpoint(best)
    assert classifier.meta.model["task"] == "classification" and classifier.meta.classes == ["c0", "c1", "c2"]
    val = [r for r in records(tmp_path / "run") if r["event"] == "val"][-1]
    assert 0 <= val["top1"] <= val["top5"] == 1.0 and val["samples"] == 12  # 3 classes: top-5 is everything
    seg = parse_config(tiny_args(tmp_path / "seg", f"--init-backbone {best}"))
    trainer = Trainer(seg, D.setup("cpu"))
    for name, value in trainer.model.backbone.state_dict().items():
        assert torch.equal(value, classifier.state_dict["backbone." + name]), name


def test_recipe_defaults_and_config_file(tmp_path):
    seg = parse_config([])
    assert (seg.lr, seg.momentum, seg.weight_decay, seg.schedule, seg.bn_momentum, seg.crop_size) == (2e-4, 0.95, 1e-4, "cosine", 0.01, 512)
    assert (seg.head_lr_mult, seg.head_bias_lr_mult, seg.output_stride, seg.dataset) == (10, 20, 16, "synthetic")
    cls = parse_config(["--task", "classification"])
    assert (cls.lr, cls.momentum, cls.nesterov, cls.weight_decay, cls.schedule, cls.epochs) == (0.01, 0.9, True, 5e-4, "step", 100)
    demo = parse_config(["--config", "demo", "--lr", "0.5"])
    assert demo.dataset == "synthetic" and demo.lr == 0.5 and demo.out_dir == "runs/demo"
    (tmp_path / "bad.json").write_text('{"learning_rate": 1}')
    with pytest.raises(ValueError, match="unknown config keys.*learning_rate"):
        parse_config(["--config", str(tmp_path / "bad.json")])


@pytest.mark.parametrize("command", [main, evaluate_main], ids=["train", "evaluate"])
def test_help_ends_with_the_exit_status_convention(command, capsys):
    with pytest.raises(SystemExit) as exited:
        command(["--help"])
    assert exited.value.code == 0
    assert " ".join(capsys.readouterr().out.split()).endswith(EXIT_STATUS_HELP)


def test_default_workers_fit_the_usable_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    config = parse_config([])
    assert config.workers == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when a loader has more workers than usable CPUs
        make_loader(EvalSet(SyntheticSegmentation(2, (8, 8))), 1, config.workers)
    assert parse_config(["--workers", "3"]).workers == 3  # an explicit value is honoured
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert parse_config([]).workers == 4
