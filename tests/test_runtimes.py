"""Every runtime available here runs the same images; masks are checked against PyTorch FP32."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import several_class_checkpoint
from benchmarks.variants import REFERENCE, VARIANTS
from runtimes import ArtifactError, open_runtime
from runtimes.options import PyTorchOptions
from runtimes.predict import Predictor
from sunet_deploy.metrics import ConfusionMatrix
from sunet_deploy.models import ModelSpec, build_model

NUM_CLASSES = 5
# Every benchmark variant is a row here, judged by the precision its runtime reports: (minimum
# pixel agreement in %, maximum |mIoU delta| in points against the reference masks). On a random
# model many pixels have near-tied logits, so reduced precision flips more of them than on data.
CONFIGS = {name: v for name, v in VARIANTS.items() if name not in (REFERENCE, f"{REFERENCE}-cuda")}
LIMITS = {"fp32": (99.9, 0.05), "fp16": (95.0, 10.0), "bf16": (95.0, 10.0)}


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    sizes = [(64, 64), (45, 77), (96, 50)]
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in sizes]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, images):
    """A small checkpoint that draws several classes on the test images, and its exports."""
    from export.onnx import export_onnx

    root = tmp_path_factory.mktemp("artifacts")
    paths = {"checkpoint": several_class_checkpoint(root / "model.safetensors", images[0], NUM_CLASSES)}
    paths["onnx"] = root / "model.onnx"
    export_onnx(paths["checkpoint"], paths["onnx"])
    paths["onnx-argmax"] = root / "model_argmax.onnx"
    export_onnx(paths["checkpoint"], paths["onnx-argmax"], argmax=True)
    paths["onnx-fp16"] = root / "model_fp16.onnx"
    export_onnx(paths["checkpoint"], paths["onnx-fp16"], fp16=True)
    return paths


def masks_with(runtime, images) -> list[np.ndarray]:
    with runtime:
        predictor = Predictor(runtime)
        return [predictor.mask(image) for image in images]


@pytest.fixture(scope="module")
def reference_masks(artifacts, images):
    masks = masks_with(open_runtime(artifacts["checkpoint"]), images)
    counts = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=NUM_CLASSES)
    assert (counts > 0).sum() >= 3 and counts.max() < 0.8 * counts.sum(), f"vacuous reference masks: {counts}"
    return masks


def miou(masks, targets) -> float:
    cm = ConfusionMatrix(NUM_CLASSES)
    for m, t in zip(masks, targets):
        cm.update(m, t)
    return cm.scores().miou * 100


def gpu_marks(variant) -> list:
    """gpu / tensorrt markers (the GPU report selects its tests by them; slow: a compile of minutes), and
    for a row that cannot run here a skip that comes before the fixtures build anything."""
    tensorrt = variant.runtime == "tensorrt" or getattr(variant.options, "provider", None) == "tensorrt"
    marks = [pytest.mark.gpu] * (variant.device == "cuda") + [pytest.mark.tensorrt] * tensorrt
    marks += [pytest.mark.slow] * bool(marks and getattr(variant.options, "compile", None))
    reason = variant.availability() if marks else None
    return marks + [pytest.mark.skip(reason=reason)] * bool(reason)


@pytest.mark.parametrize("name", [pytest.param(name, marks=gpu_marks(v)) for name, v in CONFIGS.items()])
def test_runtime_matches_pytorch_fp32(name, artifacts, images, reference_masks):
    variant = CONFIGS[name]
    if variant.artifact.startswith("engine"):
        pytest.skip("TensorRT engines are built by export.tensorrt on a machine with TensorRT and a GPU; "
                    "see tests/test_tensorrt*.py")
    if variant.artifact == "aoti":
        pytest.skip("AOTInductor packages are compiled for one size; tests/test_cpp_runtime.py and "
                    "tests/test_photos.py run them")
    if variant.artifact == "onnx-int8":
        pytest.skip("INT8 is calibrated and verified on dataset images, which this random model does not "
                    "label like a trained one; tests/test_int8.py and tests/test_benchmarks.py run INT8 rows")
    reason = variant.availability()
    if reason:
        pytest.skip(reason)
    runtime = open_runtime(artifacts[variant.artifact], variant.options)
    masks = masks_with(runtime, images)
    min_agreement, max_delta = LIMITS[runtime.info.precision]
    for mask, ref in zip(masks, reference_masks):
        assert mask.shape == ref.shape
    agreement = 100 * np.mean(np.concatenate([(m == r).ravel() for m, r in zip(masks, reference_masks)]))
    delta = abs(miou(masks, reference_masks) - 100.0)
    print(f"{name} ({runtime.info.precision}): pixel agreement {agreement:.3f} %, |mIoU delta| {delta:.3f} points")
    assert agreement >= min_agreement
    assert delta <= max_delta


def test_runtime_contract(artifacts):
    runtime = open_runtime(artifacts["onnx"])
    assert runtime.metadata.num_classes == NUM_CLASSES
    assert runtime.inputs()[0].shape[1] == 3
    with pytest.raises(RuntimeError, match="not active"):
        runtime.infer(np.zeros((1, 3, 32, 32), np.float32))
    with runtime:
        with pytest.raises(ValueError, match="N x 3 x H x W"):
            runtime.infer(np.zeros((1, 4, 32, 32), np.float32))
        out = runtime.infer(np.zeros((2, 3, 33, 47), np.float32))
        assert out.shape == (2, NUM_CLASSES, 33, 47)
        assert runtime.last_timing.total_ms > 0
    assert not runtime.active


def test_wrong_files_are_refused(tmp_path, artifacts):
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    with pytest.raises(ArtifactError, match="notes.onnx: not a loadable ONNX model"):
        open_runtime(text)
    with pytest.raises(ArtifactError, match="unknown model file type '.txt'"):
        open_runtime(tmp_path / "model.txt")
    with pytest.raises(ArtifactError, match="no such file"):
        open_runtime(tmp_path / "absent.onnx")
    with pytest.raises(ArtifactError, match="is a onnxruntime artifact"):
        open_runtime(artifacts["onnx"], PyTorchOptions())
    with pytest.raises(ValueError, match="unexpected keyword argument 'precision'"):
        open_runtime(artifacts["onnx"], precision="fp16")


def test_onnx_without_metadata_is_refused(tmp_path):
    model = build_model(ModelSpec("sunet_tiny", num_classes=2)).eval()
    path = tmp_path / "plain.onnx"
    torch.onnx.export(model, torch.randn(1, 3, 32, 32), str(path), dynamo=False)
    with pytest.raises(ArtifactError, match="no sunet-deploy metadata"):
        open_runtime(path)


def test_onnxruntime_and_tensorrt_adapters_work_where_torch_cannot_be_imported(artifacts):
    code = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import numpy as np
from runtimes import open_runtime
import runtimes.trt, runtimes.options, sunet_deploy.artifact, sunet_deploy.preprocess, sunet_deploy.metrics, sunet_deploy.engine_env  # torch-free too
with open_runtime({str(artifacts["onnx"])!r}) as rt:
    out = rt.infer(np.zeros((1, 3, 40, 56), np.float32))
assert "torch" not in sys.modules or sys.modules["torch"] is None
print(out.shape)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"(1, {NUM_CLASSES}, 40, 56)"
