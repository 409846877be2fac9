"""Test models, checkpoints and exported artifacts: the one place tests make them.

Tests that need an artifact but do not test how it was made take it from the session fixture
`artifacts` (tests/conftest.py): each checkpoint and export is built once per test session, by
whichever pytest-xdist worker asks first, under a lock, and shared by the others.

    def test_something(artifacts):
        checkpoint = artifacts.checkpoint(output_stride=8)           # sunet_tiny, draws several classes
        fp16 = artifacts.onnx(recipe=OnnxRecipe(fp16=True))           # a verified export of the default one
        labels = artifacts.onnx(artifacts.checkpoint(fit="coffee"), OnnxRecipe(argmax=True, static=(64, 96)))

Tests of the exporters themselves call `export_onnx` on `artifacts.checkpoint()`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import onnx
import torch

from sunet_deploy.formats import OnnxRecipe
from sunet_deploy.metadata import ModelMetadata
from sunet_deploy.models import ModelSpec, build_model

LOGIT_SPREAD = 4.0
"""Standard deviation of each class's logit over the images: logits up to about 12, like a trained model's."""


def make_meta(spec: ModelSpec) -> ModelMetadata:
    return ModelMetadata(
        model=spec.to_dict(),
        classes=[f"class{i}" for i in range(spec.num_classes)],
        palette=[[i, 2 * i % 256, 3 * i % 256] for i in range(spec.num_classes)],
    )


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give BatchNorm layers non-trivial statistics so eval outputs depend on every buffer."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def head_features(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The input of the model's final 1x1 head conv on `batch`."""
    features = {}
    hook = model.head[-1].register_forward_hook(lambda mod, inputs, out: features.setdefault("x", inputs[0]))
    with torch.no_grad():
        model(batch)
    hook.remove()
    return features["x"]


def spread_classes(model: torch.nn.Module, batch: torch.Tensor) -> torch.nn.Module:
    """Make an untrained model draw several classes on images like `batch`: head weights along the
    principal directions of the head's input features, as far apart as the features vary most.
    (A random model labels every pixel the same, which would make parity vacuous; random
    directions separate classes by small differences of large features, which FP16 and INT8
    rounding flip far more than in a trained model.)"""
    conv = model.head[-1]
    x = head_features(model, batch).permute(0, 2, 3, 1).reshape(-1, conv.in_channels)
    with torch.no_grad():
        centred = x - x.mean(0)
        directions = torch.linalg.svd(centred, full_matrices=False).Vh[: conv.out_channels]
        weight = directions * LOGIT_SPREAD / (centred @ directions.T).std(0)[:, None]
        conv.weight.copy_(weight[:, :, None, None])
        conv.bias.copy_(-(weight @ x.mean(0)))
    return model


def several_class_checkpoint(path, images: np.ndarray | list[np.ndarray] | None = None, num_classes: int = 5,
                             classes: list[str] | None = None, output_stride: int = 16,
                             arch: str = "sunet_tiny", training: dict | None = None) -> Path:  # fmt: skip
    """A random model (BatchNorm statistics randomized, VOC palette, classes named `classes`, `training`
    recorded as training records it) whose head is spread over the features of `images` (HxWx3 uint8;
    default: 4 synthetic images), saved at `path`."""
    from export.calibration import dataset_images, model_inputs
    from sunet_deploy.checkpoint import save_checkpoint
    from sunet_deploy.pipeline.palettes import voc_palette

    spec = ModelSpec(arch, num_classes=num_classes, output_stride=output_stride)
    torch.manual_seed(0)
    model = randomize_bn(build_model(spec)).eval()
    meta = make_meta(spec)
    meta.palette = voc_palette(num_classes).tolist()
    meta.classes = classes or meta.classes
    meta.training = training or meta.training
    if images is None:
        images = dataset_images(meta, count=4, seed=100)
    images = [images] if isinstance(images, np.ndarray) else images
    spread_classes(model, torch.from_numpy(np.concatenate(model_inputs(images, meta))))
    return save_checkpoint(path, model, meta)


def validated_checkpoint(path: Path, size: tuple[int, int] = (48, 64), samples: int = 6, num_classes: int = 5) -> Path:
    """A several-class sunet_tiny that records a small synthetic validation set (as training does), its head
    spread over that set's images: parity on it is not vacuous."""
    from sunet_deploy.data import DatasetSpec

    spec = DatasetSpec("synthetic", split="val", num_samples=samples, size=size, num_classes=num_classes, seed=0)
    dataset = spec.build()
    return several_class_checkpoint(path, [dataset[i][0] for i in range(min(4, samples))], num_classes,
                                    list(dataset.classes), training={"dataset": {"val": spec.to_dict()}})


def blank_calibrated_int8(checkpoint: Path, path: Path, activations: str = "uint8") -> Path:
    """An INT8 ONNX model of `checkpoint` whose activation ranges were calibrated on blank (mean-colour)
    images: a made-to-fail candidate, written without export.onnx's verification (which would refuse it)."""
    from export.onnx import trace_to_onnx
    from export.quantize import int8_quantizer
    from sunet_deploy.artifact import set_onnx_info
    from sunet_deploy.checkpoint import load_model
    from sunet_deploy.formats import Int8Recipe

    model, ckpt = load_model(checkpoint)
    info = ckpt.artifact_info("onnx", "logits", "int8", (None, 3, None, None))
    proto = trace_to_onnx(model, None, 17, "logits")
    blank = [np.zeros((1, 3, 64, 64), np.float32)] * 4  # normalised mean colour
    with int8_quantizer(proto, blank, Int8Recipe(method="minmax", images=4, activations=activations)) as quantizer:
        proto = quantizer.quantize()
    set_onnx_info(proto, info)
    onnx.save(proto, str(path))
    return path


@contextlib.contextmanager
def shared_folder(tmp_path_factory, name: str):
    """A folder shared by all pytest-xdist workers, held under a lock: build expensive fixtures
    (compiled packages, C++ builds) once, in whichever worker gets there first."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    folder.mkdir(exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder


def bad_case_paths(tmp_path, case, source, input_suffix, output_name):
    """(input, output) for the cases every exporter refuses: a missing or junk input, an output
    in a missing directory or that is a directory; (source, a fine output) for other cases."""
    junk = tmp_path / f"notes{input_suffix}"
    junk.write_text("these are notes, not a model")
    return {
        "missing": (tmp_path / f"absent{input_suffix}", tmp_path / output_name),
        "junk": (junk, tmp_path / output_name),
        "no_directory": (source, tmp_path / "missing" / output_name),
        "output_is_directory": (source, tmp_path),
    }.get(case, (source, tmp_path / output_name))


# ---------------------------------------------------------------- a tiny training run


TINY_TRAIN = ("--arch sunet_tiny --crop-size 32 --batch-size 4 --synthetic-samples 16 --val-synthetic-samples 4 --synthetic-size 40x48 "
        "--iterations 4 --val-every 2 --workers 0 --lr 0.01 --no-progress --log-every 1")  # fmt: skip


def tiny_args(tmp_path: Path, extra: str = "") -> list[str]:
    return [*TINY_TRAIN.split(), "--out-dir", str(tmp_path / "run"), *extra.split()]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- small ONNX graphs


def graph_model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = onnx.helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def value(name, dtype=onnx.TensorProto.FLOAT, shape=(1, 3, 8, 8)):
    return onnx.helper.make_tensor_value_info(name, dtype, list(shape))


def relu_model(dtype=onnx.TensorProto.FLOAT, opset=17):
    return graph_model([onnx.helper.make_node("Relu", ["x"], ["y"], name="relu")], [value("x", dtype)],
                       [value("y", dtype)], opset=opset)



# ---------------------------------------------------------------- shared per session


def coffee() -> np.ndarray:
    """The coffee photo (tests/photos.py) as read_image reads its PNG."""
    from photos import skimage_data

    return skimage_data().coffee()


FITS = {"synthetic": lambda: None, "coffee": coffee}
"""What a factory checkpoint's head is spread over: 4 synthetic images, or the coffee photo."""


class Artifacts:
    """Checkpoints and verified ONNX exports, each built once per session (see the module doc)."""

    def __init__(self, tmp_path_factory) -> None:
        self._tmp = tmp_path_factory

    def checkpoint(self, output_stride: int = 16, arch: str = "sunet_tiny", num_classes: int = 5,
                   fit: str = "synthetic") -> Path:  # fmt: skip
        """A `several_class_checkpoint` fitted to FITS[fit]."""
        name = f"{arch}-os{output_stride}-{num_classes}classes-{fit}"
        with shared_folder(self._tmp, f"artifact-{name}") as folder:
            path = folder / "model.safetensors"
            if not path.exists():
                several_class_checkpoint(path, FITS[fit](), num_classes, output_stride=output_stride, arch=arch)
        return path

    def onnx(self, checkpoint: Path | None = None, recipe: OnnxRecipe | None = None) -> Path:
        """`export.onnx.export_onnx(checkpoint, ..., recipe)` (default: `checkpoint()`'s, OnnxRecipe())."""
        from export.onnx import export_onnx

        checkpoint, recipe = checkpoint or self.checkpoint(), recipe or OnnxRecipe()
        key = hashlib.sha256(repr((str(checkpoint), recipe)).encode()).hexdigest()[:16]
        with shared_folder(self._tmp, f"artifact-onnx-{key}") as folder:
            path = folder / "model.onnx"
            if not path.exists():
                export_onnx(checkpoint, path, recipe)
        return path


# ---------------------------------------------------------------- an engine file with its sidecar


def engine_with_sidecar(path: Path, data: bytes, stale: bool = False, num_classes: int = 5) -> Path:
    """An engine file holding `data` and its build-environment sidecar (python -m export.tensorrt writes
    one), recorded for these bytes or (`stale`) for others; a TensorRT runtime opens it without TensorRT."""
    from sunet_deploy.artifact import ArtifactInfo
    from sunet_deploy.engine_env import EngineSidecar, GpuInfo, write_engine_sidecar
    from sunet_deploy.fileio import file_sha256

    path.write_bytes(data)
    meta = make_meta(ModelSpec("sunet_tiny", num_classes=num_classes))
    tensor = {"name": "input", "shape": ["batch", 3, "height", "width"], "dtype": "float32"}
    sidecar = EngineSidecar(ArtifactInfo(meta, "tensorrt", "fp16"), "10.9.0", GpuInfo("NVIDIA H100", "9.0"), "0" * 64,
                            "f" * 64 if stale else file_sha256(path), [tensor], [{**tensor, "name": "logits"}])
    write_engine_sidecar(path, sidecar)
    return path
