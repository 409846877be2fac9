"""The C++ runtime's ONNX Runtime backend (runtimes/cpp), built with no LibTorch, run on models from
`python -m export.onnx` and compared pixel for pixel with the Python ONNX Runtime adapter on real photos.

The library is the onnxruntime wheel's; the headers, which the wheel lacks, come from ONNXRUNTIME_ROOT,
the system (Debian 13's libonnxruntime-dev), or runtimes/cpp/fetch_onnxruntime_headers.sh into
build/onnxruntime (Debian's package, unpacked; see docs/cpp.md). The tests skip only when none works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from benchmarks.serving.labels_dtype import export_int64_labels
from runtimes import open_runtime
from runtimes.predict import Predictor
from sunet_deploy.artifact import ORT_DISABLED_OPTIMIZERS_KEY
from sunet_deploy.pipeline.images import read_image
from sunet_deploy.pipeline.normalize import Normalization
from sunet_deploy.pipeline.palettes import read_label_png

from factory import shared_folder
from photos import write_photos
from sunet_deploy.formats import Int8Recipe, OnnxRecipe

ort = pytest.importorskip("onnxruntime", reason="the ONNX Runtime backend links the onnxruntime wheel's library")

ROOT = Path(__file__).resolve().parents[1]
FETCH_HEADERS = ROOT / "runtimes/cpp/fetch_onnxruntime_headers.sh"
FETCHED_HEADERS = ROOT / "build/onnxruntime"
SYSTEM_HEADERS = Path("/usr/include/onnxruntime/onnxruntime_cxx_api.h")
STATIC_SIZE = (64, 96)
THREADS = 1  # both sides, and one per pytest-xdist worker
MISSING_TOOLS = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(bool(MISSING_TOOLS), reason=f"C++ runtime needs {', '.join(MISSING_TOOLS)} on PATH")


def onnxruntime_root() -> list[str]:
    """The CMake arguments that point at ONNX Runtime headers, fetching them when none are here."""
    if os.environ.get("ONNXRUNTIME_ROOT") or SYSTEM_HEADERS.exists():
        return []  # CMake reads the variable, or finds the system's
    if not (FETCHED_HEADERS / "include/onnxruntime_cxx_api.h").exists():
        done = subprocess.run([str(FETCH_HEADERS), str(FETCHED_HEADERS)], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"ONNX Runtime headers cannot be obtained ({FETCH_HEADERS.name}: {reason})")
    return [f"-DONNXRUNTIME_ROOT={FETCHED_HEADERS}"]


def run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def write_png_photos(folder: Path) -> None:
    """The seven test photos as PNG (the C++ runtime reads PNG only): the two JPEGs decoded by read_image."""
    for path in write_photos(folder).values():
        if path.suffix != ".png":
            cv2.imwrite(str(path.with_suffix(".png")), cv2.cvtColor(read_image(path), cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def ort_cpp(tmp_path_factory, artifacts):
    """Builds the project with LibTorch unfindable, once for all pytest-xdist workers, beside sunet_tiny ONNX
    models of the session's artifacts: dynamic logits, dynamic uint8 labels, static 64x96 logits, TensorRT's
    INT8 graph (int8 activations, FP16 float parts) and int64 labels exported as before labels were uint8."""
    checkpoint = artifacts.checkpoint(fit="coffee")
    models = {"model.onnx": artifacts.onnx(checkpoint), "labels.onnx": artifacts.onnx(checkpoint, OnnxRecipe(argmax=True)),
              "static.onnx": artifacts.onnx(checkpoint, OnnxRecipe(static=STATIC_SIZE)),
              "int8.onnx": artifacts.onnx(checkpoint, OnnxRecipe(int8=Int8Recipe(images=4)))}
    with shared_folder(tmp_path_factory, "cpp_onnxruntime") as shared:
        if not (shared / "configure.log").exists():
            export_int64_labels(checkpoint, shared / "labels_int64.onnx")
            root = onnxruntime_root()
            write_png_photos(shared / "photos")
            generator = ["-G", "Ninja"] if shutil.which("ninja") else []
            configure = run(["cmake", "-S", str(ROOT / "runtimes/cpp"), "-B", str(shared / "build"), *generator,
                             *root, f"-DPython3_EXECUTABLE={sys.executable}", "-DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON",
                             "-DSUNET_WITH_ONNXRUNTIME=ON", "-DSUNET_WITH_TENSORRT=OFF"])
            run(["cmake", "--build", str(shared / "build"), "-j", "2"])
            (shared / "configure.log").write_text(configure)
            for name, path in models.items():
                (shared / name).symlink_to(path)
    return shared


def predict(ort_cpp: Path, artifact, image, mask, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ort_cpp / "build/sunet_predict"), "--threads", str(THREADS), *options,
                           str(artifact), str(image), str(mask)], capture_output=True, text=True, timeout=120)


def python_mask(artifact: Path, image_path: Path) -> np.ndarray:
    with open_runtime(artifact, threads=THREADS) as runtime:
        return Predictor(runtime).mask(read_image(image_path))


def test_builds_without_libtorch(ort_cpp):
    assert "AOTInductor backend skipped, not found: LibTorch" in (ort_cpp / "configure.log").read_text()
    libraries = run(["ldd", str(ort_cpp / "build/sunet_predict")])
    assert "libonnxruntime.so.1" in libraries and "not found" not in libraries
    assert "libtorch" not in libraries and "libc10" not in libraries
    assert "backends in this build: onnxruntime\n" in run([str(ort_cpp / "build/sunet_predict"), "--help"])


@pytest.mark.parametrize("model", ["model.onnx", "labels.onnx", "labels_int64.onnx", "int8.onnx"])
def test_masks_equal_python_onnxruntime_on_photos(ort_cpp, tmp_path, model):
    """Same library, same input floats, same graph optimisations: the masks must be identical (for the INT8
    graph too, whose metadata names an optimizer both sides leave out)."""
    classes = set()
    photos = sorted((ort_cpp / "photos").glob("*.png"))
    assert len(photos) == 7
    for photo in photos:
        done = predict(ort_cpp, ort_cpp / model, photo, tmp_path / "mask.png")
        assert done.returncode == 0, done.stderr
        assert "(onnxruntime backend" in done.stdout
        mask = read_label_png(tmp_path / "mask.png")
        np.testing.assert_array_equal(mask, python_mask(ort_cpp / model, photo), err_msg=photo.name)
        classes |= set(np.unique(mask).tolist())
    assert len(classes) >= 3, "degenerate test: the model draws fewer than three classes on the photos"


def test_labels_output_types(ort_cpp):
    """What an --argmax export writes now (one byte per pixel), and what it wrote before (still read above)."""
    def output_type(name: str) -> int:
        return onnx.load(str(ort_cpp / name)).graph.output[0].type.tensor_type.elem_type

    assert output_type("labels.onnx") == onnx.TensorProto.UINT8
    assert output_type("labels_int64.onnx") == onnx.TensorProto.INT64


def onnxruntime_session(model: Path, disabled: str | None):
    """A CPU session, one thread; `disabled` goes in the config entry the C++ backend sets
    (kOrtSessionOptionsDisableSpecifiedOptimizers in onnxruntime_session_options_config_keys.h)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    if disabled:
        options.add_session_config_entry("optimization.disable_specified_optimizers", disabled)
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def test_int8_graph_keeps_the_optimizers_its_metadata_disables_off(ort_cpp):
    """The INT8 graph for TensorRT names an ONNX Runtime optimizer that changes its answer (export.quantize,
    ORT_FP16_QDQ_DISABLED). The config entry the C++ backend sets from the metadata gives, in the same library,
    logits identical to the Python adapter's (InferenceSession(disabled_optimizers=...)); without it the logits
    and the masks differ, so the mask comparison above would catch a backend that ignored the metadata."""
    model = ort_cpp / "int8.onnx"
    disabled = {p.key: p.value for p in onnx.load(str(model)).metadata_props}[ORT_DISABLED_OPTIMIZERS_KEY]
    assert disabled == "WeightBiasQuantization"
    with_entry, without = onnxruntime_session(model, disabled), onnxruntime_session(model, None)
    differing_pixels = 0
    with open_runtime(model, threads=THREADS) as runtime:
        normalize = Normalization.for_artifact(runtime.info)
        for photo in sorted((ort_cpp / "photos").glob("*.png")):
            batch, _ = normalize([read_image(photo)])
            python = runtime.infer(batch)
            np.testing.assert_array_equal(with_entry.run(None, {"input": batch})[0], python, err_msg=photo.name)
            unrestricted = without.run(None, {"input": batch})[0]
            assert not np.array_equal(unrestricted, python), photo.name
            differing_pixels += int((unrestricted.argmax(1) != python.argmax(1)).sum())
    assert differing_pixels > 0


def test_fixed_size_model(ort_cpp, tmp_path):
    image = tmp_path / "crop.png"
    crop = read_image(ort_cpp / "photos/coffee.png")[100 : 100 + STATIC_SIZE[0], 200 : 200 + STATIC_SIZE[1]]
    cv2.imwrite(str(image), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    done = predict(ort_cpp, ort_cpp / "static.onnx", image, tmp_path / "mask.png", "--repeat", "3")
    assert done.returncode == 0, done.stderr
    assert "3 more runs: median" in done.stdout
    np.testing.assert_array_equal(read_label_png(tmp_path / "mask.png"), python_mask(ort_cpp / "static.onnx", image))
    done = predict(ort_cpp, ort_cpp / "static.onnx", ort_cpp / "photos/coffee.png", tmp_path / "mask.png")
    assert done.returncode == 1
    assert "the model takes 64x96 images only, this one is 400x600" in done.stderr


def with_metadata(source: Path, target: Path, **changes: str | None) -> Path:
    """A copy of an ONNX model whose sunet_deploy.<key> strings are changed (None removes them)."""
    model = onnx.load(str(source))
    props = {p.key: p.value for p in model.metadata_props}
    for key, value in changes.items():
        props.pop(f"sunet_deploy.{key}", None)
        if value is not None:
            props[f"sunet_deploy.{key}"] = value
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(target))
    return target


def bad_models(ort_cpp: Path, folder: Path) -> dict[str, Path]:
    model = ort_cpp / "model.onnx"
    plain = onnx.load(str(model))
    del plain.metadata_props[:]
    onnx.save(plain, str(folder / "plain.onnx"))
    (folder / "corrupt.onnx").write_bytes(model.read_bytes()[:5000])
    (folder / "model.pt2").write_bytes(b"PK\x03\x04")
    with_metadata(model, folder / "gray.onnx", input_shape="?x1x?x?")
    with_metadata(model, folder / "batch4.onnx", input_shape="4x3x?x?")
    with_metadata(model, folder / "future.onnx", format="sunet-deploy-2")
    with_metadata(model, folder / "nomean.onnx", mean=None)
    with_metadata(model, folder / "probs.onnx", output="probabilities")
    return {p.name: p for p in folder.iterdir()}


@pytest.mark.parametrize(
    ("artifact", "message"),
    [
        ("corrupt.onnx", "corrupt.onnx: not a loadable ONNX model ("),
        ("plain.onnx", "plain.onnx: no sunet-deploy metadata; export the model with python -m export.onnx"),
        ("gray.onnx", "input shape '?x1x?x?' does not take one RGB image"),
        ("batch4.onnx", "input shape '4x3x?x?' does not take one RGB image"),
        ("future.onnx", "metadata format 'sunet-deploy-2', this runtime reads 'sunet-deploy-1'"),
        ("nomean.onnx", "metadata has no 'mean' entry"),
        ("probs.onnx", "unknown output kind 'probabilities'"),
        ("model.pt2", "an AOTInductor package, but this build of sunet_runtime has no AOTInductor backend"),
        ("missing.onnx", "missing.onnx: no such file"),
    ],
)
def test_bad_models_fail_with_a_clear_message(ort_cpp, tmp_path, artifact, message):
    models = bad_models(ort_cpp, tmp_path)
    model = models.get(artifact, tmp_path / artifact)
    done = predict(ort_cpp, model, ort_cpp / "photos/coffee.png", tmp_path / "m.png")
    assert done.returncode == 1
    last_line = done.stderr.splitlines()[-1]  # Debian 13's libonnxruntime logs schema lines before ours
    assert last_line.startswith("error: ") and message in last_line
    assert not (tmp_path / "m.png").exists()


def test_cuda_needs_a_library_with_the_cuda_provider(ort_cpp, tmp_path):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA execution provider")
    done = predict(ort_cpp, ort_cpp / "model.onnx", ort_cpp / "photos/coffee.png", tmp_path / "m.png", "--cuda")
    assert done.returncode == 1
    assert "this ONNX Runtime library has no CUDA execution provider" in done.stderr


@pytest.mark.parametrize("arguments", [
    "--threads two m.onnx in.png out.png",
    "--repeat -1 m.onnx in.png out.png",
    "--gpu m.onnx in.png out.png",
    "m.onnx in.png out.png extra.png",
    "m.onnx in.png out.png --threads",
])
def test_usage_errors(ort_cpp, arguments):
    done = subprocess.run([str(ort_cpp / "build/sunet_predict"), *arguments.split()], capture_output=True, text=True)
    assert done.returncode == 2 and "usage: sunet_predict" in done.stderr


def test_latency_comparison_script(ort_cpp):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "benchmarks.studies.cpp_latency", str(ort_cpp / "build/sunet_predict"),
               str(ort_cpp / "model.onnx"), str(ort_cpp / "photos/coins.png"), "--repeat", "2", "--rounds", "1"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| 1 |" in done.stdout.splitlines()[-1]
