import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from sunet_deploy.data.cityscapes import CITYSCAPES_CLASSES, cityscapes_palette
from sunet_deploy.data.voc import VOC_CLASSES
from sunet_deploy.artifact import ArtifactInfo
from sunet_deploy.metadata import ModelMetadata
from sunet_deploy.pipeline import masks as masks_module
from sunet_deploy.pipeline.geometry import Geometry, fit_geometry, resize_bilinear
from sunet_deploy.pipeline.images import ImageError, read_image
from sunet_deploy.pipeline.masks import class_indices, labels_to_mask, logits_to_mask, mask_dtype
from sunet_deploy.pipeline.normalize import Normalization
from sunet_deploy.pipeline.palettes import colorize, overlay, read_label_png, save_palette_png, voc_palette
from sunet_deploy.protocol import Protocol
from sunet_deploy.tiling import InferModel, segment

REPO = Path(__file__).resolve().parents[1]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (10, 14, 3), dtype=np.uint8)


# ---------------------------------------------------------------- read_image


def test_read_image_color_is_rgb(tmp_path, rgb):
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)


def test_read_image_16bit_gray_bgra(tmp_path, rgb):
    cv2.imwrite(str(tmp_path / "deep.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png"), rgb)

    gray = rgb[:, :, 0]
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    out = read_image(tmp_path / "gray.png")
    assert out.shape == (10, 14, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)

    bgra = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full(rgb.shape[:2], 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "alpha.png"), bgra)
    np.testing.assert_array_equal(read_image(tmp_path / "alpha.png"), rgb)


def test_read_image_errors_name_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff not really a jpeg")
    for path in (corrupt, tmp_path / "missing.png"):
        with pytest.raises(ImageError, match=path.name):
            read_image(path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.png"):
        read_image(tmp_path / "empty.png")


# ---------------------------------------------------------------- input tensor and masks


def test_normalization_gives_nchw(rgb):
    x, (geometry,) = Normalization(MEAN, STD)(rgb)
    assert x.shape == (1, 3, 10, 14) and x.dtype == np.float32
    expected = (rgb[3, 5, 1] / 255 - MEAN[1]) / STD[1]
    assert x[0, 1, 3, 5] == pytest.approx(expected, abs=1e-5)
    assert geometry == Geometry((10, 14), (10, 14), (10, 14))


def test_letterbox_pads_with_mean_and_masks_come_back_at_original_size(rgb):
    x, (g,) = Normalization(MEAN, STD, ((16, 16), (16, 16)))([rgb])  # a 16x16 artifact: scaled to 11x16, padded
    assert x.shape == (1, 3, 16, 16) and g == Geometry((10, 14), (11, 16), (16, 16))
    assert np.all(x[0, :, 11:, :] == 0)
    labels = np.random.default_rng(1).integers(0, 5, (16, 16))
    logits = np.eye(5, dtype=np.float32)[labels].transpose(2, 0, 1)
    mask = logits_to_mask(logits, g)
    assert mask.dtype == np.uint8 and mask.shape == (10, 14)
    expected = resize_bilinear(logits[:, :11, :16], (10, 14)).argmax(axis=0)
    np.testing.assert_array_equal(mask, expected)
    padded = Geometry((10, 14), (10, 14), (16, 16))  # padded only: labels and logits cropped alike
    np.testing.assert_array_equal(labels_to_mask(labels, padded), labels[:10, :14])
    np.testing.assert_array_equal(logits_to_mask(logits, padded), labels[:10, :14])


def test_letterbox_round_trip_of_a_batch():
    image = np.zeros((40, 60, 3), np.uint8)
    x, geometries = Normalization(MEAN, STD, ((20, 30), (20, 30)))([image, image])
    assert x.shape == (2, 3, 20, 30) and geometries[0] == fit_geometry((40, 60), (20, 30), (20, 30))
    labels = np.zeros((2, 20, 30), np.int64)
    labels[:, :, 15:] = 3  # right half is class 3
    masks = labels_to_mask(labels, geometries)
    assert masks.shape == (2, 40, 60) and masks.dtype == np.uint8
    assert np.all(masks[:, :, :30] == 0) and np.all(masks[:, :, 30:] == 3)
    logits = np.stack([labels == c for c in range(4)], axis=1).astype(np.float32)
    np.testing.assert_array_equal(logits_to_mask(logits, geometries), masks)


def test_batch_of_different_sizes_is_refused():
    with pytest.raises(ValueError, match="different sizes"):
        Normalization(MEAN, STD)([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)])


def test_mask_rule_takes_logits_and_labels_of_any_integer_type():
    logits = np.random.default_rng(2).normal(size=(2, 5, 6, 7)).astype(np.float32)
    labels = logits.argmax(1)  # int64, as an --argmax ONNX graph gives
    for given in (labels, labels.astype(np.uint8), labels.astype(np.int32)):
        got = class_indices(given, "labels")
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, labels)
    np.testing.assert_array_equal(class_indices(logits, "logits"), labels)
    assert class_indices(logits, "logits").dtype == np.uint8
    assert mask_dtype(256) == np.uint8 and mask_dtype(257) == np.int32
    assert class_indices(np.array([[300]]), "labels").dtype == np.int32
    wide = np.zeros((1, 300, 2, 2), np.float32)
    wide[0, 299] = 1
    assert class_indices(wide, "logits").dtype == np.int32 and class_indices(wide, "logits").max() == 299
    with pytest.raises(ValueError, match="output kind"):
        class_indices(labels, "probs")


def test_a_band_of_the_resize_is_the_whole_resize(monkeypatch):
    scores = np.random.default_rng(3).normal(size=(4, 9, 13)).astype(np.float32)
    whole = resize_bilinear(scores, (37, 29))
    np.testing.assert_array_equal(resize_bilinear(scores, (37, 29), (10, 23)), whole[:, 10:23])
    g = Geometry((37, 29), (9, 13), (9, 13))
    full = logits_to_mask(scores, g)
    monkeypatch.setattr(masks_module, "BAND_ROWS", 5)
    np.testing.assert_array_equal(logits_to_mask(scores, g), full)
    np.testing.assert_array_equal(full, whole.argmax(axis=0))


def test_windows_and_whole_images_are_normalised_alike():
    """Tiling's normalisation is the whole image's, to the bit (the two once differed by a float32 rounding of 1/std)."""
    image = np.random.default_rng(4).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    seen = []

    def infer(batch):
        seen.append(batch.copy())
        return np.zeros((len(batch), 2, *batch.shape[2:]), np.float32)

    segment(image, InferModel.for_uint8(infer, "logits", 2, MEAN, STD), Protocol())
    whole, _ = Normalization(MEAN, STD)(image)
    np.testing.assert_array_equal(seen[0], whole)


def test_metadata_of_older_artifacts_with_a_resize_policy_still_loads():
    old = ModelMetadata(model={"arch": "x"}, classes=["a"], palette=[[0, 0, 0]]).to_json()
    assert "resize_policy" not in old
    data = json.loads(old)
    data["resize_policy"] = "none"
    meta = ModelMetadata.from_json(json.dumps(data))
    assert meta.classes == ["a"] and not hasattr(meta, "resize_policy")
    # every container stores the ArtifactInfo JSON: an older ONNX model's, as it was written
    stored = {"format": "onnx", "input_shape": [None, 3, 64, 96], "metadata": data, "precision": "fp32", "profile": None}
    info = ArtifactInfo.from_json(json.dumps(stored))
    assert info.metadata == meta and "resize_policy" not in info.to_json()
    x, (g,) = Normalization.for_artifact(info)(np.zeros((32, 96, 3), np.uint8))
    assert x.shape == (1, 3, 64, 96) and g == Geometry((32, 96), (32, 96), (64, 96))


# ---------------------------------------------------------------- palettes and label PNGs


def test_palettes():
    palette = voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert palette[15].tolist() == [192, 128, 128]  # person
    assert palette[255].tolist() == [224, 224, 192]  # VOC border colour
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[15] == "person"
    assert cityscapes_palette().shape == (19, 3) and len(CITYSCAPES_CLASSES) == 19
    assert cityscapes_palette()[13].tolist() == [0, 0, 142] and CITYSCAPES_CLASSES[13] == "car"


def test_palette_png_round_trip(tmp_path):
    mask = np.zeros((6, 9), np.uint8)
    mask[1:4, 2:5] = 15
    mask[0, :] = 255
    path = tmp_path / "label.png"
    save_palette_png(path, mask, voc_palette(21))
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[15 * 3 : 16 * 3] == [192, 128, 128]
    np.testing.assert_array_equal(read_label_png(path), mask)


def test_read_label_png_gray_and_errors(tmp_path):
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(mask).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "gray.png"), mask)
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ImageError, match="rgb.png.*mode 'RGB'"):
        read_label_png(tmp_path / "rgb.png")
    (tmp_path / "bad.png").write_bytes(b"junk")
    with pytest.raises(ImageError, match="bad.png"):
        read_label_png(tmp_path / "bad.png")
    with pytest.raises(ImageError, match="missing.png"):
        read_label_png(tmp_path / "missing.png")


def test_colorize_and_overlay():
    palette = np.array([[0, 0, 0], [200, 100, 50]], np.uint8)
    mask = np.array([[0, 1], [255, 1]], np.uint8)
    colours = colorize(mask, palette)
    assert colours[0, 1].tolist() == [200, 100, 50] and colours[1, 0].tolist() == [0, 0, 0]
    image = np.full((2, 2, 3), 100, np.uint8)
    assert overlay(image, mask, palette, alpha=0.5)[0, 1].tolist() == [150, 100, 75]


# ---------------------------------------------------------------- torch-free import


def test_pipeline_tiling_and_metrics_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import sunet_deploy.pipeline.normalize, sunet_deploy.pipeline.masks, sunet_deploy.pipeline.palettes\n"
        "import sunet_deploy.tiling, sunet_deploy.metrics\n"
        "assert 'torch' not in {m.split('.')[0] for m, v in sys.modules.items() if v is not None}\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
