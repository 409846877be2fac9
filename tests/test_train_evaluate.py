"""train.evaluate: confusion matrices on a crafted case, the multi-scale/sliding-window protocol,
and the dataset the CLI scores (the validation set the checkpoint records, or the one asked for)."""

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from sunet_deploy.checkpoint import save_checkpoint
from sunet_deploy.cli import EXIT_USAGE
from sunet_deploy.data import DatasetSpec, SyntheticSegmentation
from sunet_deploy.data.__main__ import write_synthetic_folder
from sunet_deploy.metadata import ModelMetadata
from sunet_deploy.models import ModelSpec, build_model
from sunet_deploy.protocol import Protocol
from train.evaluate import constant_prediction, evaluate_segmentation, main, protocol_masks


class ThresholdModel(nn.Module):
    """Class 1 where channel 0 > 0, else class 0; class 2 never: a model whose answers we know."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positive = (x[:, :1] > 0).float()
        return torch.cat([1 - positive, positive, torch.full_like(positive, -1.0)], dim=1) * 5


def test_crafted_confusion_matrix_iou_and_baseline():
    image = -torch.ones(1, 3, 2, 4)
    image[0, 0, :, 2:] = 1.0  # predicted: [[0 0 1 1], [0 0 1 1]]
    label = torch.tensor([[[0, 1, 1, 1], [0, 0, 255, 2]]])
    cm = evaluate_segmentation(ThresholdModel(), [(image, label)], 3, torch.device("cpu"))
    # true 0 -> pred 0,0,0 ; true 1 -> pred 0,1,1 ; true 2 -> pred 1 ; 255 ignored
    np.testing.assert_array_equal(cm.matrix, [[3, 0, 0], [1, 2, 0], [0, 1, 0]])
    scores = cm.scores()
    np.testing.assert_allclose(scores.iou, [3 / 4, 2 / 4, 0.0])
    assert scores.miou == pytest.approx((3 / 4 + 2 / 4 + 0) / 3)
    assert scores.pixel_accuracy == pytest.approx(5 / 7)
    baseline = constant_prediction(cm, 0).scores()
    assert baseline.pixel_accuracy == pytest.approx(3 / 7) and baseline.miou == pytest.approx((3 / 7) / 3)


def test_trivial_protocol_equals_single_scale(tiny_model):
    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        single = tiny_model(x).argmax(dim=1).numpy()
    np.testing.assert_array_equal(protocol_masks(tiny_model, x, Protocol(), 5), single)
    big_window = Protocol(window=(64, 64), stride=(32, 32))  # a window larger than the image is the whole image
    np.testing.assert_array_equal(protocol_masks(tiny_model, x, big_window, 5), single)


def test_paper_protocol_through_evaluate(tiny_model):
    x = torch.randn(1, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    paper_like = Protocol((0.5, 0.75, 1.0, 1.25), base_size=48, flip=True, window=(32, 32), stride=(21, 21))
    masks = protocol_masks(tiny_model, x, paper_like, 5)
    assert masks.shape == (1, 40, 56)  # tests/test_protocol.py checks the values against PyTorch
    label = torch.zeros(1, 40, 56, dtype=torch.long)
    cm = evaluate_segmentation(tiny_model, [(x, label)], 5, torch.device("cpu"), paper_like)
    assert cm.matrix.sum() == 40 * 56 and cm.matrix[0].tolist() == np.bincount(masks.ravel(), minlength=5).tolist()


# ---------------------------------------------------------------- which dataset the CLI scores

RECORDED_VAL = DatasetSpec("synthetic", split="val", num_samples=3, size=(40, 48), num_classes=7, seed=5)


def checkpoint(path, training: dict):
    """A sunet_tiny checkpoint (random weights) of the synthetic classes with this training summary."""
    torch.manual_seed(0)
    val = RECORDED_VAL.build()
    meta = ModelMetadata(model=ModelSpec("sunet_tiny", num_classes=7).to_dict(), classes=val.classes,
                         palette=val.palette.tolist(), training=training)  # fmt: skip
    return save_checkpoint(path, build_model(ModelSpec("sunet_tiny", num_classes=7)).eval(), meta)


@pytest.fixture
def recorded(tmp_path):
    train = DatasetSpec("synthetic", split="train", num_samples=9, size=(40, 48), num_classes=7, seed=5)
    return checkpoint(tmp_path / "best.safetensors", {"dataset": {"train": train.to_dict(), "val": RECORDED_VAL.to_dict()}})


def evaluate(checkpoint_path, *flags: str) -> tuple[int, dict | None]:
    output = checkpoint_path.with_name("eval.json")
    output.unlink(missing_ok=True)
    status = main([str(checkpoint_path), "--workers", "0", "--output", str(output), *flags])
    return status, json.loads(output.read_text()) if output.exists() else None


def test_without_flags_the_recorded_validation_set_is_scored(recorded):
    status, result = evaluate(recorded)
    assert status == 0 and result["dataset"] == RECORDED_VAL.to_dict() and result["images"] == 3
    assert np.array(result["confusion_matrix"]).sum() == 3 * 40 * 48
    again = evaluate(recorded, "--dataset", "synthetic", "--synthetic-size", "40x48", "--synthetic-samples", "3")
    assert again[0] == 0 and again[1]["confusion_matrix"] == result["confusion_matrix"]  # repeating the record is fine


def test_the_same_images_as_a_folder_score_the_same(recorded, tmp_path):
    write_synthetic_folder(SyntheticSegmentation(3, (40, 48), 7, seed=5, split="val"), tmp_path / "folder")
    _, from_record = evaluate(recorded)
    status, from_folder = evaluate(recorded, "--dataset", "folder", "--data-root", str(tmp_path / "folder"))
    assert status == 0 and from_folder["dataset"]["kind"] == "folder"
    assert from_folder["confusion_matrix"] == from_record["confusion_matrix"]


@pytest.mark.parametrize("flags, message", [
    ("--synthetic-size 64x64", r"--synthetic-size contradicts the validation set the checkpoint records \(synthetic val: 3 images 40x48"),
    ("--synthetic-samples 50", "--synthetic-samples contradicts"),
    ("--dataset folder --data-root {folder}", r"has the classes \[background, ellipse, rectangle\] \(3\), the checkpoint"),
    ("--dataset voc", "--dataset voc needs --data-root"),
    ("--dataset voc --data-root {folder} --synthetic-size 40x48", "--synthetic-size: for synthetic data only"),
])  # fmt: skip
def test_a_dataset_that_contradicts_the_checkpoint_is_refused(recorded, tmp_path, capsys, flags, message):
    write_synthetic_folder(SyntheticSegmentation(2, (40, 48), num_classes=3), tmp_path / "folder")  # 3 classes
    capsys.readouterr()
    assert evaluate(recorded, *flags.format(folder=tmp_path / "folder").split()) == (EXIT_USAGE, None)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err


def test_older_checkpoints_take_the_dataset_from_the_flags_with_a_note(tmp_path, capsys):
    older = checkpoint(tmp_path / "old.safetensors", {"dataset": "synthetic"})
    status, result = evaluate(older, "--synthetic-samples", "2", "--synthetic-size", "40x48")
    assert status == 0 and result["images"] == 2 and result["dataset"]["seed"] == 0
    err = capsys.readouterr().err
    assert err.startswith("note: ") and err.count("\n") == 1 and "records no dataset" in err
