"""The predict CLI: files, folders and videos in; palette masks, overlays and a latency summary out."""

import json

import cv2
import numpy as np
import pytest
import torch

from factory import make_meta, randomize_bn
from runtimes import open_runtime
from runtimes.predict import Predictor, main
from sunet_deploy.checkpoint import save_checkpoint
from sunet_deploy.models import ModelSpec, build_model
from sunet_deploy.pipeline.palettes import read_label_png
from sunet_deploy.formats import OnnxRecipe


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
        for stem, rel in [("a", "a.png"), ("nested/b", "nested/b.jpg")]:
            from sunet_deploy.pipeline.images import read_image

            expected = predictor.mask(read_image(image_folder / rel))
            assert np.array_equal(read_label_png(out / f"{stem}_mask.png"), expected)
            assert cv2.imread(str(out / f"{stem}_overlay.jpg")).shape[:2] == expected.shape
    summary = json.loads((out / "predict_summary.json").read_text())
    assert summary["latency_ms"]["count"] == 2 and summary["skipped"] == [] and summary["written"] == 2
    assert "latency per image" in capsys.readouterr().out


def test_corrupt_image_is_reported_and_others_kept(tmp_path, checkpoint, image_folder, capsys):
    (image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    assert main([str(checkpoint), str(image_folder), "-o", str(out)]) == 1
    assert "broken.png" in capsys.readouterr().err
    assert (out / "a_mask.png").exists() and (out / "nested" / "b_mask.png").exists()
    assert json.loads((out / "predict_summary.json").read_text())["written"] == 2


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


def test_same_stems_get_separate_masks(tmp_path, checkpoint):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    rng = np.random.default_rng(4)
    for name, size in [("photo.png", (30, 40)), ("photo.jpg", (31, 41)), ("sub/photo.png", (32, 42))]:
        cv2.imwrite(str(photos / name), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert main([str(checkpoint), str(photos), "-o", str(out)]) == 0
    shapes = {p.relative_to(out).as_posix(): read_label_png(p).shape for p in out.rglob("*_mask.png")}
    assert shapes == {"photo_png_mask.png": (30, 40), "photo_jpg_mask.png": (31, 41), "sub/photo_mask.png": (32, 42)}


def test_files_that_would_write_one_mask_are_refused_before_writing(tmp_path, checkpoint, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "x.png"), np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / "out"
    assert main([str(checkpoint), str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"), "-o", str(out)]) == 2
    assert "would both write" in capsys.readouterr().err and not out.exists()


def test_output_folder_inside_the_input_is_never_read(tmp_path, checkpoint, image_folder, capsys):
    out = image_folder / "out"
    assert main([str(checkpoint), str(image_folder), "-o", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main([str(checkpoint), str(image_folder), "-o", str(out)]) == 2  # a second run does not overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main([str(checkpoint), str(image_folder), "-o", str(out), "--overwrite"]) == 0
    assert json.loads((out / "predict_summary.json").read_text())["inputs"] == 2  # not its own masks
    assert not list(out.rglob("*_mask_mask.png"))
    assert main([str(checkpoint), str(out / "a_mask.png"), "-o", str(out), "--overwrite"]) == 2


def test_exif_orientation_is_applied(tmp_path, checkpoint):
    from PIL import Image

    upright = np.random.default_rng(5).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees counter-clockwise; viewers rotate it back
    path = tmp_path / "phone.jpg"
    Image.fromarray(np.ascontiguousarray(np.rot90(upright))).save(path, exif=exif, quality=100)
    out = tmp_path / "out"
    assert main([str(checkpoint), str(path), "-o", str(out)]) == 0
    assert read_label_png(out / "phone_mask.png").shape == (24, 40)
    assert cv2.imread(str(out / "phone_overlay.jpg")).shape[:2] == (24, 40)
    assert json.loads((out / "predict_summary.json").read_text())["exif_rotated"] == [str(path)]


def test_options_of_another_runtime_are_an_error(tmp_path, checkpoint, image_folder, capsys):
    assert main([str(checkpoint), str(image_folder), "-o", str(tmp_path / "out"), "--provider", "cuda"]) == 2
    assert "--provider do(es) not apply to the pytorch runtime" in capsys.readouterr().err


def test_fixed_size_model_segments_any_size_and_failures_are_skipped(tmp_path, checkpoint, image_folder, capsys):
    from export.onnx import export_onnx

    static = export_onnx(checkpoint, tmp_path / "static.onnx", OnnxRecipe(static=(32, 32))).path
    (image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    for flags, letterboxed, window in [([], 0, [32, 32]), (["--letterbox"], 2, None)]:  # windows by default
        out = tmp_path / f"out{letterboxed}"
        assert main([str(static), str(image_folder), "-o", str(out), *flags]) == 1
        err = capsys.readouterr().err
        assert err.count("skipped:") == 1 and "broken.png" in err
        assert read_label_png(out / "a_mask.png").shape == (40, 52)
        assert read_label_png(out / "nested" / "b_mask.png").shape == (33, 21)
        summary = json.loads((out / "predict_summary.json").read_text())
        assert (summary["written"], summary["letterboxed_images"], len(summary["skipped"])) == (2, letterboxed, 1)
        assert (summary["protocol"] or {}).get("window") == window
