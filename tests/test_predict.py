"""The predict CLI: files, folders and videos in; palette masks, overlays and a latency summary out."""

import json

import cv2
import numpy as np
import pytest
import torch

from conftest import make_meta, randomize_bn
from runtimes import open_runtime
from runtimes.predict import Predictor, main
from sunet_deploy.checkpoint import save_checkpoint
from sunet_deploy.models import ModelSpec, build_model
from sunet_deploy.preprocess import read_label_png


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    spec = ModelSpec("sunet_tiny", num_classes=4)
    torch.manual_seed(3)
    model = randomize_bn(build_model(spec)).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors", model, make_meta(spec))


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, size in [("a.png", (40, 52)), ("nested/b.jpg", (33, 21))]:
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return folder


def test_folder_of_images(tmp_path, checkpoint, image_folder, capsys):
    out = tmp_path / "out"
    assert main([str(checkpoint), str(image_folder), "-o", str(out)]) == 0
    with open_runtime(checkpoint) as runtime:
        predictor = Predictor(runtime)
        for stem, rel in [("a", "a.png"), ("b", "nested/b.jpg")]:
            from sunet_deploy.preprocess import read_image

            expected = predictor.mask(read_image(image_folder / rel))
            assert np.array_equal(read_label_png(out / f"{stem}_mask.png"), expected)
            assert cv2.imread(str(out / f"{stem}_overlay.jpg")).shape[:2] == expected.shape
    summary = json.loads((out / "predict_summary.json").read_text())
    assert summary["latency_ms"]["count"] == 2 and summary["failed"] == []
    assert "latency per image" in capsys.readouterr().out


def test_corrupt_image_is_reported_and_others_kept(tmp_path, checkpoint, image_folder, capsys):
    (image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    assert main([str(checkpoint), str(image_folder), "-o", str(out)]) == 1
    assert "broken.png" in capsys.readouterr().err
    assert (out / "a_mask.png").exists() and (out / "b_mask.png").exists()


@pytest.mark.parametrize("make_input, message", [
    (lambda d: d.mkdir() or d, "holds no images"),
    (lambda d: d / "missing.png", "no such file or folder"),
])
def test_bad_inputs_exit_2(tmp_path, checkpoint, capsys, make_input, message):
    target = make_input(tmp_path / "empty")
    assert main([str(checkpoint), str(target), "-o", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_wrong_model_file_exits_2(tmp_path, image_folder, capsys):
    fake = tmp_path / "model.safetensors"
    fake.write_text("nope")
    assert main([str(fake), str(image_folder), "-o", str(tmp_path / "out")]) == 2
    assert "model.safetensors" in capsys.readouterr().err


def test_video(tmp_path, checkpoint):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    rng = np.random.default_rng(2)
    for _ in range(3):
        writer.write(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    writer.release()
    out = tmp_path / "out"
    assert main([str(checkpoint), str(video), "-o", str(out)]) == 0
    masks = sorted((out / "clip").glob("frame_*_mask.png"))
    assert len(masks) == 3
    assert read_label_png(masks[0]).shape == (32, 48)
    assert (out / "clip_overlay.mp4").stat().st_size > 0
