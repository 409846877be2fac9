"""Every runtime available here runs the same images; masks are checked against PyTorch FP32."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_meta, randomize_bn, spread_classes
from runtimes import ArtifactError, availability, open_runtime
from runtimes.predict import Predictor
from sunet_deploy.checkpoint import save_checkpoint
from sunet_deploy.metrics import ConfusionMatrix
from sunet_deploy.models import ModelSpec, build_model
from sunet_deploy.preprocess import Normalization, voc_palette

NUM_CLASSES = 5
# (id, runtime, artifact kind, options, minimum pixel agreement, maximum |mIoU delta| in points)
CONFIGS = [
    ("pytorch-fp32-cpu", "pytorch", "checkpoint", {}, 1.0, 0.0),
    ("pytorch-bf16-cpu", "pytorch", "checkpoint", {"precision": "bf16"}, 0.95, 10.0),
    ("pytorch-channels_last-cpu", "pytorch", "checkpoint", {"channels_last": True}, 0.999, 0.05),
    ("onnxruntime-cpu", "onnxruntime", "onnx", {"provider": "cpu"}, 0.999, 0.05),
    ("onnxruntime-cpu-argmax", "onnxruntime", "onnx_argmax", {"provider": "cpu"}, 0.999, 0.05),
    ("onnxruntime-cuda", "onnxruntime", "onnx", {"provider": "cuda"}, 0.999, 0.05),
    ("pytorch-fp32-cuda", "pytorch", "checkpoint", {"device": "cuda"}, 0.999, 0.05),
    ("pytorch-fp16-cuda-graph", "pytorch", "checkpoint", {"device": "cuda", "precision": "fp16", "cuda_graph": True},
     0.99, 0.3),
    ("tensorrt-fp16", "tensorrt", "engine", {}, 0.99, 0.3),
]


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
    spec = ModelSpec("sunet_tiny", num_classes=NUM_CLASSES, output_stride=16)
    torch.manual_seed(0)
    model = randomize_bn(build_model(spec)).eval()
    meta = make_meta(spec)
    meta.palette = voc_palette(NUM_CLASSES).tolist()
    spread_classes(model, torch.from_numpy(Normalization.from_metadata(meta)(images[0])[0]))
    paths = {"checkpoint": save_checkpoint(root / "model.safetensors", model, meta)}
    paths["onnx"] = root / "model.onnx"
    export_onnx(paths["checkpoint"], paths["onnx"])
    paths["onnx_argmax"] = root / "model_argmax.onnx"
    export_onnx(paths["checkpoint"], paths["onnx_argmax"], argmax=True)
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


@pytest.mark.parametrize("config", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_runtime_matches_pytorch_fp32(config, artifacts, images, reference_masks):
    _, runtime, kind, options, min_agreement, max_miou_delta = config
    if kind == "engine":
        pytest.skip("TensorRT engines are built by export.tensorrt on a machine with TensorRT and a GPU; "
                    "see tests/test_tensorrt*.py")
    reason = availability(runtime, **{k: v for k, v in options.items() if k in ("device", "provider")})
    if reason:
        pytest.skip(reason)
    masks = masks_with(open_runtime(artifacts[kind], runtime, **options), images)
    for mask, ref in zip(masks, reference_masks):
        assert mask.shape == ref.shape
    agreement = np.mean(np.concatenate([(m == r).ravel() for m, r in zip(masks, reference_masks)]))
    delta = abs(miou(masks, reference_masks) - 100.0)
    print(f"{config[0]}: pixel agreement {agreement:.5f}, |mIoU delta| {delta:.3f} points")
    assert agreement >= min_agreement
    assert delta <= max_miou_delta


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
        open_runtime(artifacts["onnx"], runtime="pytorch")


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
import runtimes.trt, sunet_deploy.preprocess, sunet_deploy.metrics, sunet_deploy.engine_env  # torch-free too
with open_runtime({str(artifacts["onnx"])!r}) as rt:
    out = rt.infer(np.zeros((1, 3, 40, 56), np.float32))
assert "torch" not in sys.modules or sys.modules["torch"] is None
print(out.shape)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"(1, {NUM_CLASSES}, 40, 56)"
