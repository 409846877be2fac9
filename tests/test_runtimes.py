"""Every runtime available here runs the same images; masks are checked against PyTorch FP32.

Each benchmark variant is a row, its artifact built by benchmarks.harness.artifacts from the variant's recipe
(shared by the rows of one recipe): ONNX, INT8 and AOTInductor rows run on this CPU; engine rows
need TensorRT and a GPU.
"""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.harness.artifacts import artifact_for
from benchmarks.harness.variants import REFERENCE, VARIANTS
from factory import engine_with_sidecar, several_class_checkpoint, shared_folder
from export.calibration import dataset_images
from runtimes import ArtifactError, RuntimeUnavailable, open_runtime
from runtimes.options import PyTorchOptions
from runtimes.predict import Predictor
from sunet_deploy.artifact import read_checkpoint_info
from sunet_deploy import formats
from sunet_deploy.formats import OnnxRecipe
from sunet_deploy.metrics import ConfusionMatrix
from sunet_deploy.models import ModelSpec, build_model
from sunet_deploy.tolerance import Tolerance

NUM_CLASSES = 5
FIXED = (64, 64)
"""The one size an AOTInductor package is compiled for here (the smallest test image's: a quick compile)."""
# Every benchmark variant is a row here, judged by the precision its runtime reports, looser than
# benchmarks.parity's: on a random model many pixels have near-tied logits, so reduced precision
# flips more of them than on data.
CONFIGS = {name: v for name, v in VARIANTS.items() if name not in (REFERENCE, f"{REFERENCE}-cuda")}
LIMITS = {"fp32": Tolerance(min_agreement=99.9, max_delta_miou=0.05),
          "fp16": Tolerance(min_agreement=95.0, max_delta_miou=15.0),
          "bf16": Tolerance(min_agreement=95.0, max_delta_miou=15.0),
          "int8": Tolerance(min_agreement=95.0, max_delta_miou=25.0)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small checkpoint that draws several classes on its dataset's images, INT8 included (made once
    for all pytest-xdist workers, which then share its artifacts)."""
    with shared_folder(tmp_path_factory, "runtime_matrix") as root:
        path = root / "model.safetensors"
        if not path.is_file():
            several_class_checkpoint(path, num_classes=NUM_CLASSES)
    return path


@pytest.fixture(scope="module")
def images(checkpoint):
    """Crops of the checkpoint's dataset images, of several sizes (two of the fixed one)."""
    meta = read_checkpoint_info(checkpoint).metadata
    sizes = [FIXED, (45, 77), (96, 50), FIXED]
    return [image[:h, -w:] for image, (h, w) in zip(dataset_images(meta, count=len(sizes), seed=3), sizes)]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, checkpoint):
    """artifact(variant): its file, built once per recipe for all workers (benchmarks.harness.artifacts names
    it by the checkpoint and the recipe); INT8 calibrated on 4 images, to stay quick."""
    def artifact(variant) -> Path:
        recipe = variant.recipe
        if isinstance(recipe, OnnxRecipe) and recipe.int8:
            variant = dataclasses.replace(variant, recipe=dataclasses.replace(
                recipe, int8=dataclasses.replace(recipe.int8, images=4)))
        with shared_folder(tmp_path_factory, "runtime_matrix") as root:
            return artifact_for(variant, checkpoint, root, (1, 3, *FIXED))

    return artifact


def masks_with(runtime, images) -> list[np.ndarray]:
    with runtime:
        predictor = Predictor(runtime)
        return [predictor.mask(image) for image in images]


@pytest.fixture(scope="module")
def reference_masks(checkpoint, images):
    masks = masks_with(open_runtime(checkpoint), images)
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
    reason = variant.availability()
    if reason and variant.format == "tensorrt":
        pytest.skip(f"{reason} (the TensorRT fakes compute stand-in logits, not the model: tests/test_trt_runtime.py "
                    "runs the adapter on them)")
    if reason:
        pytest.skip(reason)
    runtime = open_runtime(artifacts(variant), variant.options)
    # A fixed-size artifact letterboxes other sizes (tests/test_predict.py): judged on its own size here.
    chosen = [i for i, image in enumerate(images) if runtime.info.fixed_size in (None, image.shape[:2])]
    assert len(chosen) >= 2
    masks = masks_with(runtime, [images[i] for i in chosen])
    references = [reference_masks[i] for i in chosen]
    limit = LIMITS[runtime.info.precision]
    for mask, ref in zip(masks, references):
        assert mask.shape == ref.shape
    agreement = 100 * np.mean(np.concatenate([(m == r).ravel() for m, r in zip(masks, references)]))
    delta = abs(miou(masks, references) - 100.0)
    print(f"{name} ({runtime.info.precision}): pixel agreement {agreement:.3f} %, |mIoU delta| {delta:.3f} points")
    assert agreement >= limit.min_agreement
    assert delta <= limit.max_delta_miou


def test_runtime_contract(artifacts):
    runtime = open_runtime(artifacts(VARIANTS["onnxruntime-cpu"]))
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
        open_runtime(artifacts(VARIANTS["onnxruntime-cpu"]), PyTorchOptions())
    with pytest.raises(ValueError, match="the onnxruntime runtime has no option .precision."):
        open_runtime(artifacts(VARIANTS["onnxruntime-cpu"]), precision="fp16")


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
import runtimes.trt, runtimes.options, sunet_deploy.artifact, sunet_deploy.pipeline.normalize, sunet_deploy.pipeline.masks, sunet_deploy.pipeline.palettes, sunet_deploy.tiling, sunet_deploy.metrics, sunet_deploy.engine_env  # torch-free too
with open_runtime({str(artifacts(VARIANTS["onnxruntime-cpu"]))!r}) as rt:
    out = rt.infer(np.zeros((1, 3, 40, 56), np.float32))
assert "torch" not in sys.modules or sys.modules["torch"] is None
print(out.shape)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"(1, {NUM_CLASSES}, 40, 56)"


# ---------------------------------------------------------------- the options every runtime is asked alike

REFUSED = {  # what a runtime that cannot honour a common option says, in one line naming it
    "tensorrt": {"threads": "the tensorrt runtime cannot take threads=1: it computes on the GPU",
                 "device": "the tensorrt runtime cannot take device='cpu': it runs on a CUDA device only"},
    "triton": {"threads": "the triton runtime cannot take threads=1: a served model computes with the server's",
               "device": "the triton runtime cannot take device='cpu': a served model runs where the server's"},
}
RUNS = {"checkpoint": REFERENCE, "onnx": "onnxruntime-cpu", "aoti": "aoti-cpu", "openvino": "openvino-cpu"}
"""The formats that run here with threads=1, device="cpu": the benchmark variant whose artifact they open."""


@pytest.mark.parametrize("fmt", formats.formats(), ids=lambda f: f.name)
def test_every_format_opens_with_the_common_options(fmt, artifacts, checkpoint, images, tmp_path, monkeypatch):
    """open_runtime(ANY, threads=1, device="cpu") runs where the runtime can honour both (torch's threads set
    while a torch runtime computes, and restored), and is refused in one line naming the runtime where not."""
    assert fmt.name in RUNS or fmt.runtime in REFUSED, f"say what the {fmt.name} format does with threads/device"
    if fmt.name not in RUNS:
        target = engine_with_sidecar(tmp_path / "model.engine", b"engine") if fmt.files else "triton://h:1/m"
        for name, value in (("threads", 1), ("device", "cpu")):
            with pytest.raises(ValueError) as refused:
                open_runtime(target, **{name: value})
            assert str(refused.value).startswith(REFUSED[fmt.runtime][name]) and "\n" not in str(refused.value)
        if fmt.runtime == "tensorrt":
            assert open_runtime(target, device="cuda:1").options.device_id == 1
        return
    path = checkpoint if fmt.name == "checkpoint" else artifacts(VARIANTS[RUNS[fmt.name]])
    if fmt.reads:  # a runtime that reads another format's files is chosen by its options
        opener = lambda **common: open_runtime(path, fmt.options_class().create(**common))  # noqa: E731
    else:
        opener = lambda **common: open_runtime(path, **common)  # noqa: E731
    if fmt.reads and fmt.runtime == "openvino":
        pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    runtime = opener(threads=1, device="cpu")
    assert (runtime.options.threads, runtime.options.device) == (1, "cpu")
    seen = []
    infer = runtime._infer
    monkeypatch.setattr(runtime, "_infer", lambda batch: seen.append(torch.get_num_threads()) or infer(batch))
    torch.set_num_threads(2)
    try:
        with runtime:
            size = runtime.info.fixed_size or (32, 48)
            assert runtime.infer(np.zeros((1, 3, *size), np.float32)).shape[-2:] == size
    finally:
        after = torch.get_num_threads()
        torch.set_num_threads(1)
    assert after == 2  # another runtime's (or the caller's) setting is left as it was
    if fmt.runtime not in ("onnxruntime", "openvino"):
        assert seen == [2] and runtime.options.threads == 1  # _infer sets them itself, inside
    if fmt.runtime == "openvino":
        with pytest.raises(ValueError, match="^the openvino runtime cannot take device='cuda': it runs on the CPU"):
            opener(device="cuda")
    elif not torch.cuda.is_available() or fmt.runtime == "onnxruntime":
        with pytest.raises(RuntimeUnavailable, match=f"^the {fmt.runtime} runtime cannot run here: "):
            opener(device="cuda").activate()


def test_torch_threads_are_the_runtimes_while_it_computes(checkpoint, monkeypatch):
    from runtimes import pytorch

    runtime = open_runtime(checkpoint, threads=1)
    seen = []
    forward = pytorch.PyTorchRuntime._forward
    monkeypatch.setattr(pytorch.PyTorchRuntime, "_forward", lambda self, x: seen.append(torch.get_num_threads())
                        or forward(self, x))
    torch.set_num_threads(2)
    try:
        with runtime:
            runtime.infer(np.zeros((1, 3, 32, 32), np.float32))
        assert (seen, torch.get_num_threads()) == ([1], 2)
    finally:
        torch.set_num_threads(1)
