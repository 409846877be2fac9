"""Seven real photos (odd sizes, grayscale, RGBA, JPEG, EXIF-rotated) through every runtime here,
fixed-size artifacts included: every mask has its photo's size (as viewers show it), and FP32
runtimes label >= 99.9 % of pixels as PyTorch FP32 does on the same input geometry."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks.harness.variants import VARIANTS
from factory import shared_folder
from photos import upright_chelsea, write_photos
from runtimes import open_runtime
from runtimes.options import AOTInductorOptions, OnnxRuntimeOptions, PyTorchOptions
from runtimes.predict import Predictor
from sunet_deploy.pipeline.images import read_image
from sunet_deploy.pipeline.normalize import Normalization
from sunet_deploy.formats import AotiRecipe, OnnxRecipe

FIXED = (64, 96)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    paths = write_photos(tmp_path_factory.mktemp("photos"))
    return {name: read_image(path) for name, path in paths.items()}


@pytest.fixture(scope="module")
def photo_models(tmp_path_factory, artifacts) -> dict[str, Path]:
    """A tiny model that draws several classes on the photos, and its exports (the AOTInductor
    package is compiled once for all pytest-xdist workers)."""
    from export.aoti import export_aoti

    checkpoint = artifacts.checkpoint(fit="coffee")
    with shared_folder(tmp_path_factory, "photo_artifacts") as root:
        if not (root / "model.pt2").exists():
            export_aoti(checkpoint, root / "model.pt2", AotiRecipe(size=FIXED))
    return {"model.safetensors": checkpoint, "model.onnx": artifacts.onnx(checkpoint),
            "static.onnx": artifacts.onnx(checkpoint, OnnxRecipe(static=FIXED)), "model.pt2": root / "model.pt2"}


def masks(runtime, photos, geometry_of=None) -> dict[str, np.ndarray]:
    """Masks of every photo; `geometry_of` (a runtime) imposes that runtime's letterbox on this one."""
    with runtime:
        predictor = Predictor(runtime)
        if geometry_of is not None:
            predictor.normalize = Normalization.for_artifact(geometry_of.info)
        return {name: predictor.mask(image) for name, image in photos.items()}


CASES = {  # name -> (artifact file, options)
    **{name: ("model.safetensors", v.options) for name, v in VARIANTS.items()
       if v.format == "checkpoint" and v.device == "cpu" and name != "pytorch-fp32"},
    "onnxruntime-cpu": ("model.onnx", OnnxRuntimeOptions()),
    "onnxruntime-cpu-static": ("static.onnx", OnnxRuntimeOptions()),
    "aoti-cpu": ("model.pt2", AOTInductorOptions()),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_every_runtime_segments_every_photo_at_its_size(name, photo_models, photos):
    artifact, options = CASES[name]
    runtime = open_runtime(photo_models[artifact], options)
    got = masks(runtime, photos)
    reference = masks(open_runtime(photo_models["model.safetensors"], PyTorchOptions()), photos, geometry_of=runtime)
    assert got["chelsea"].shape == upright_chelsea().shape[:2]  # EXIF orientation applied
    for photo, mask in got.items():
        assert mask.shape == photos[photo].shape[:2], photo
    pixels = np.concatenate([(got[p] == reference[p]).ravel() for p in photos])
    classes = np.unique(np.concatenate([m.ravel() for m in reference.values()]))
    print(f"{name} ({runtime.info.precision}, {runtime.info.describe_shapes()}): agreement {100 * pixels.mean():.4f} % "
          f"over {pixels.size} pixels, {len(classes)} classes in the reference")
    assert len(classes) >= 3, "vacuous: the reference draws fewer than 3 classes"
    if runtime.info.precision == "fp32":
        assert pixels.mean() >= 0.999


def test_package_follows_the_umask_and_foreign_files_get_one_line(photo_models, tmp_path, capfd):
    from runtimes import ArtifactError

    umask = os.umask(0)
    os.umask(umask)
    assert photo_models["model.pt2"].stat().st_mode & 0o777 == 0o666 & ~umask  # as model.onnx is
    junk = tmp_path / "random.pt2"
    junk.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ArtifactError, match="not an AOTInductor package"):
        open_runtime(junk)
    assert "outdated" not in capfd.readouterr().err
