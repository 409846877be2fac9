"""The C++ runtime (runtimes/cpp) built with CMake against the installed LibTorch (AOTInductor backend
alone), run on an AOTInductor package from `python -m export.aoti`, compared with the Python runtimes.
The ONNX Runtime backend: tests/test_cpp_onnxruntime.py."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from export.aoti import main as export_main
from runtimes import open_runtime
from runtimes.predict import Predictor
from runtimes.pytorch import PyTorchRuntime
from sunet_deploy.checkpoint import load_model
from sunet_deploy.pipeline.images import read_image
from sunet_deploy.pipeline.palettes import read_label_png, voc_palette

from factory import several_class_checkpoint, shared_folder

ROOT = Path(__file__).resolve().parents[1]
SIZE = (64, 96)
MISSING_TOOLS = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(bool(MISSING_TOOLS), reason=f"C++ runtime needs {', '.join(MISSING_TOOLS)} on PATH")


def scene(rng: np.random.Generator) -> np.ndarray:
    """Three coloured bands, darker below, with noise: an image whose mask has several classes."""
    image = np.zeros((*SIZE, 3), np.uint8)
    for i, color in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        image[:, i * 32 : (i + 1) * 32] = color
    image[32:] //= 2
    return np.clip(image + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)


def build_project(build_dir: Path) -> Path:
    prefix = torch.utils.cmake_prefix_path
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    for command in (
        ["cmake", "-S", str(ROOT / "runtimes/cpp"), "-B", str(build_dir), *generator, f"-DCMAKE_PREFIX_PATH={prefix}",
         "-DSUNET_WITH_AOTI=ON", "-DSUNET_WITH_ONNXRUNTIME=OFF", "-DSUNET_WITH_TENSORRT=OFF"],
        ["cmake", "--build", str(build_dir), "-j", "2"],
    ):
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return build_dir / "sunet_predict"


@pytest.fixture(scope="module")
def cpp(tmp_path_factory):
    """Builds the C++ project and exports one sunet_tiny package, once for all pytest-xdist workers."""
    with shared_folder(tmp_path_factory, "cpp_runtime") as shared:
        if not (shared / "model.pt2").exists():
            image = scene(np.random.default_rng(0))
            cv2.imwrite(str(shared / "scene.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            several_class_checkpoint(shared / "model.safetensors", image)
            build_project(shared / "build")
            assert export_main([str(shared / "model.safetensors"), "-o", str(shared / "model.pt2"),
                                "--size", f"{SIZE[0]}x{SIZE[1]}"]) == 0
    return shared


def predict(cpp: Path, artifact, image, mask) -> subprocess.CompletedProcess:
    return subprocess.run([str(cpp / "build/sunet_predict"), str(artifact), str(image), str(mask)],
                          capture_output=True, text=True, timeout=120)


def python_aoti_mask(cpp: Path, image_path: Path) -> np.ndarray:
    """The mask from the same package run by the Python AOTInductor runtime on Python's pre-processing."""
    with open_runtime(cpp / "model.pt2") as runtime:
        return Predictor(runtime).mask(read_image(image_path))


def test_package_matches_eager_and_carries_metadata(cpp):
    model, ckpt = load_model(cpp / "model.safetensors")
    info = open_runtime(cpp / "model.pt2").info
    meta = info.metadata
    assert (info.format, info.precision, info.input_shape) == ("aoti", "fp32", (1, 3, *SIZE))
    assert (meta.classes, meta.palette, meta.mean, meta.std) == (ckpt.meta.classes, ckpt.meta.palette, ckpt.meta.mean, ckpt.meta.std)
    assert meta.source_sha256 == ckpt.sha256
    x = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        torch.testing.assert_close(torch._inductor.aoti_load_package(str(cpp / "model.pt2"))(x), model(x), rtol=1e-4, atol=1e-4)


def test_mask_equals_python_runtime(cpp, tmp_path):
    done = predict(cpp, cpp / "model.pt2", cpp / "scene.png", tmp_path / "mask.png")
    assert done.returncode == 0, done.stderr
    mask = read_label_png(tmp_path / "mask.png")
    assert np.bincount(mask.ravel()).max() < 0.6 * mask.size, "degenerate test: one class covers most pixels"
    # The same compiled code on Python's pre-processing: any difference is pre- or post-processing.
    np.testing.assert_array_equal(mask, python_aoti_mask(cpp, cpp / "scene.png"))
    # The Python runtime (PyTorch eager); AOTInductor's kernels round differently, so a pixel
    # whose two best logits are within ~1e-6 may flip: allow 0.1%.
    with PyTorchRuntime(cpp / "model.safetensors") as runtime:
        eager = Predictor(runtime).mask(read_image(cpp / "scene.png"))
    assert (mask == eager).mean() >= 0.999
    with Image.open(tmp_path / "mask.png") as png:
        assert png.mode == "P"
        assert np.array(png.getpalette()[:15]).reshape(5, 3).tolist() == voc_palette(5).tolist()  # the model's own


@pytest.mark.parametrize("variant", ["gray", "gray16", "rgb16", "rgba", "palette"])
def test_png_decoding_matches_python(cpp, tmp_path, variant):
    rgb = scene(np.random.default_rng(3))
    path = tmp_path / f"{variant}.png"
    if variant == "gray":
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    elif variant == "gray16":
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257 + 100)
    elif variant == "rgb16":
        cv2.imwrite(str(path), rgb[:, :, ::-1].astype(np.uint16) * 250 + 37)
    elif variant == "rgba":
        alpha = np.random.default_rng(4).integers(0, 256, SIZE, dtype=np.uint8)
        cv2.imwrite(str(path), np.dstack([rgb[:, :, ::-1], alpha]))
    else:
        Image.fromarray(rgb).quantize(colors=16).save(path)
    done = predict(cpp, cpp / "model.pt2", path, tmp_path / "mask.png")
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(read_label_png(tmp_path / "mask.png"), python_aoti_mask(cpp, path))


def bad_files(cpp: Path, folder: Path) -> dict[str, Path]:
    """Wrong model files and broken images, next to the good ones in `cpp`."""
    (folder / "notes.pt2").write_text("not a model\n")
    (folder / "model.onnx").write_bytes(b"\x08\x07")
    (folder / "model.engine").write_bytes(b"\x08\x07")
    with zipfile.ZipFile(folder / "other.pt2", "w") as archive:
        archive.writestr("archive/data.pkl", b"junk")
    png = (cpp / "scene.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    cv2.imwrite(str(folder / "small.png"), np.zeros((32, 48, 3), np.uint8))
    return {p.name: p for p in [*cpp.iterdir(), *folder.iterdir()]}


@pytest.mark.parametrize(
    ("artifact", "image", "message"),
    [
        ("model.pt2", "missing.png", "missing.png: cannot be opened"),
        ("model.pt2", "truncated.png", "truncated.png: corrupt PNG image"),
        ("model.pt2", "model.safetensors", "not a PNG image"),
        ("model.pt2", "small.png", "the model takes 64x96 images only, this one is 32x48"),
        ("notes.pt2", "scene.png", "not an AOTInductor package"),
        ("other.pt2", "scene.png", "cannot be loaded as an AOTInductor package"),
        ("model.onnx", "scene.png", "an ONNX model, but this build of sunet_runtime has no ONNX Runtime backend"),
        ("model.engine", "scene.png", "a TensorRT engine, but this build of sunet_runtime has no TensorRT backend"),
        ("model.safetensors", "scene.png", "unknown model file type '.safetensors'"),
        ("missing.pt2", "scene.png", "missing.pt2: no such file"),
    ],
)
def test_bad_input_fails_with_a_clear_message(cpp, tmp_path, artifact, image, message):
    files = bad_files(cpp, tmp_path)
    done = predict(cpp, files.get(artifact, tmp_path / artifact), files.get(image, tmp_path / image), tmp_path / "mask.png")
    assert done.returncode == 1
    last_line = done.stderr.splitlines()[-1]  # LibTorch may log a warning line before ours
    assert last_line.startswith("error: ") and message in last_line
    assert not (tmp_path / "mask.png").exists()


def test_usage_error(cpp):
    done = subprocess.run([str(cpp / "build/sunet_predict"), "only-one-arg"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage: sunet_predict" in done.stderr


def test_export_refuses_bad_arguments(cpp, tmp_path, capsys):
    assert export_main([str(cpp / "model.safetensors"), "-o", str(tmp_path / "model.zip"), "--size", "64x96"]) == 2
    assert "must end in .pt2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        export_main([str(cpp / "model.safetensors"), "-o", str(tmp_path / "m.pt2"), "--size", "64"])
    assert exit_info.value.code == 2
    assert export_main([str(tmp_path / "none.safetensors"), "-o", str(tmp_path / "m.pt2")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.pt2")), "a failed export left a file behind"
