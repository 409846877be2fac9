"""runtimes.predict with the inference protocol: --tile/--tile-overlap/--scales/--flip/--tile-batch on any
runtime, the training crop as the default window, the warning for large untiled images, one-line errors."""

import json

import cv2
import numpy as np
import pytest
import torch

from factory import make_meta, randomize_bn
from runtimes import open_runtime
from runtimes.predict import Predictor, main
from sunet_deploy.checkpoint import save_checkpoint
from sunet_deploy.formats import OnnxRecipe
from sunet_deploy.models import ModelSpec, build_model
from sunet_deploy.pipeline.images import read_image
from sunet_deploy.pipeline.palettes import read_label_png
from sunet_deploy.protocol import Protocol

CROP = 16


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny model that records a 16-pixel training crop."""
    spec = ModelSpec("sunet_tiny", num_classes=4)
    torch.manual_seed(3)
    model = randomize_bn(build_model(spec)).eval()
    meta = make_meta(spec)
    meta.training = {"crop_size": CROP}
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors", model, meta)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "scene.png"
    cv2.imwrite(str(path), np.random.default_rng(1).integers(0, 256, (40, 52, 3), dtype=np.uint8))
    return path


def summary_of(out):
    return json.loads((out / "predict_summary.json").read_text())


def test_tiles_scales_and_flips_match_the_engine_on_onnx(tmp_path, checkpoint, image):
    from export.onnx import export_onnx

    onnx = export_onnx(checkpoint, tmp_path / "model.onnx").path
    out = tmp_path / "out"
    flags = ["--tile", "24x20", "--tile-overlap", "6", "--scales", "0.75", "1", "--flip", "--tile-batch", "3"]
    assert main([str(onnx), str(image), "-o", str(out), *flags]) == 0
    protocol = Protocol((0.75, 1.0), 0, True, (24, 20), (18, 14), batch=3)
    assert summary_of(out)["protocol"]["window"] == [24, 20] and summary_of(out)["protocol"]["stride"] == [18, 14]
    with open_runtime(checkpoint) as runtime:  # PyTorch under the same protocol
        expected = Predictor(runtime, protocol).mask(read_image(image))
    written = read_label_png(out / "scene_mask.png")
    assert written.shape == (40, 52) and (written == expected).mean() > 0.999


def test_a_window_as_large_as_the_image_is_whole_image_inference(tmp_path, checkpoint, image):
    whole, tiled = tmp_path / "whole", tmp_path / "tiled"
    assert main([str(checkpoint), str(image), "-o", str(whole)]) == 0
    assert main([str(checkpoint), str(image), "-o", str(tiled), "--tile", "64"]) == 0
    np.testing.assert_array_equal(read_label_png(tiled / "scene_mask.png"), read_label_png(whole / "scene_mask.png"))


def test_tile_without_size_uses_the_training_crop_and_large_images_warn(tmp_path, checkpoint, image, capsys):
    assert main([str(checkpoint), str(image), "-o", str(tmp_path / "a"), "--tile"]) == 0
    assert summary_of(tmp_path / "a")["protocol"]["window"] == [CROP, CROP]
    assert "warning" not in capsys.readouterr().err
    assert main([str(checkpoint), str(image), "-o", str(tmp_path / "b")]) == 0  # 52 > 2 x 16: whole, warned
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "52x40, over 2x the 16-pixel crops" in warnings[0] and "pass --tile" in warnings[0]
    assert summary_of(tmp_path / "b")["large_untiled_images"] == [str(image)]


@pytest.mark.parametrize("flags, message", [
    (["--tile", "64"], "window 64x64 is larger than the artifact accepts (height 64 > 32, width 64 > 32)"),
    (["--tile", "16", "--tile-overlap", "16"], "overlap 16x16 must be smaller than the window 16x16"),
    (["--tile-overlap", "-1"], "--tile-overlap must be >= 0"),
    (["--scales", "1", "0"], "scales must be > 0"),
    (["--letterbox", "--tile"], "does not combine"),
    (["--tile-batch", "0"], "batch must be >= 1"),
])  # fmt: skip
def test_bad_protocol_settings_exit_2_in_one_line(tmp_path, checkpoint, image, capsys, flags, message):
    from export.onnx import export_onnx

    static = export_onnx(checkpoint, tmp_path / "static.onnx", OnnxRecipe(static=(32, 32))).path
    assert main([str(static), str(image), "-o", str(tmp_path / "out"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_tile_needs_a_size_when_no_crop_is_recorded(tmp_path, image, capsys):
    spec = ModelSpec("sunet_tiny", num_classes=3)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", build_model(spec).eval(), make_meta(spec))
    assert main([str(ckpt), str(image), "-o", str(tmp_path / "out"), "--tile"]) == 2
    assert "records no training crop size; give the window, e.g. --tile 512" in capsys.readouterr().err
