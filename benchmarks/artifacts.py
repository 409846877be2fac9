"""Build the artifacts a benchmark needs from one checkpoint, through the exporters' Python APIs.

Artifacts are cached in a work dir under names that carry the checkpoint's SHA-256, so a changed
checkpoint is never measured through a stale export. Each one is made by the same function as
its CLI (`export_onnx`, `export_aoti`, `build_engine`), so the measured file is the shipped one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from runtimes import Runtime, open_runtime
from sunet_deploy.checkpoint import save_checkpoint
from sunet_deploy.fileio import file_sha256
from sunet_deploy.metadata import ModelMetadata
from sunet_deploy.models import ModelSpec, build_model
from sunet_deploy.preprocess import voc_palette

from .variants import Variant


def random_checkpoint(arch: str, workdir: Path, num_classes: int = 21, output_stride: int = 16) -> Path:
    """A checkpoint of `arch` with random weights (latency does not depend on the weights)."""
    path = workdir / f"{arch}_os{output_stride}_random.safetensors"
    if not path.is_file():
        spec = ModelSpec(arch, num_classes=num_classes, output_stride=output_stride)
        torch.manual_seed(0)
        meta = ModelMetadata(model=spec.to_dict(), classes=[f"class{i}" for i in range(num_classes)],
                             palette=voc_palette(num_classes).tolist())  # fmt: skip
        workdir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, build_model(spec).eval(), meta)
    return path


def _stem(checkpoint: Path) -> str:
    return f"{checkpoint.stem}-{file_sha256(checkpoint)[:12]}"


def build_onnx(checkpoint: Path, workdir: Path, fp16: bool = False, argmax: bool = False,
               int8: str | None = None) -> Path:
    """ONNX model (FP32; FP16 or INT8 Q/DQ inside with FP32 inputs/outputs) with dynamic batch/height/width.
    INT8 is calibrated as `python -m export.onnx --int8` calibrates by default, with `int8` activations:
    "uint8" for ONNX Runtime's x86 kernels (they run those fused, FP32 elsewhere), "int8" for TensorRT
    (FP16 elsewhere, so that the TensorRT INT8 row is INT8+FP16, comparable to the FP16 row)."""
    from export.onnx import export_onnx
    from export.quantize import Int8Settings

    settings = Int8Settings(activations=int8) if int8 else None
    quantized = f"-{int8}" + ("-fp16" if settings and settings.float_type == "fp16" else "")
    suffix = "".join(name for name, on in (("-fp16", fp16), (quantized, int8), ("-argmax", argmax)) if on)
    path = workdir / f"{_stem(checkpoint)}{suffix}.onnx"
    if not path.is_file():
        export_onnx(checkpoint, path, argmax, fp16=fp16, int8=settings)
    return path


def build_aoti(checkpoint: Path, workdir: Path, shape: tuple[int, int, int, int], device: str) -> Path:
    """AOTInductor package for one input shape, compiled exactly as `python -m export.aoti` compiles it."""
    from export.aoti import export_aoti

    n, _, h, w = shape
    path = workdir / f"{_stem(checkpoint)}-{device}-{n}x{h}x{w}.pt2"
    if not path.is_file():
        print(f"compiling {path.name} with AOTInductor (a minute or several on a small CPU)", flush=True)
        export_aoti(checkpoint, path, size=(h, w), batch=n, device=device)
    return path


def build_engine(checkpoint: Path, workdir: Path, shape: tuple[int, int, int, int], int8: bool = False) -> Path:
    """FP16 (or INT8, from the Q/DQ graph) TensorRT engine for one input shape; FP16 comes from the FP16
    ONNX on TensorRT 11, which has no FP16 builder flag."""
    from export.tensorrt import EngineOptions, import_tensorrt
    from export.tensorrt import build_engine as build
    from export.trt_build import has_fp16_builder_flag

    fp16_graph = not int8 and not has_fp16_builder_flag(import_tensorrt())
    onnx_path = build_onnx(checkpoint, workdir, fp16=fp16_graph, int8="int8" if int8 else None)
    path = workdir / f"{onnx_path.stem}-{'x'.join(map(str, shape))}.engine"
    if not path.is_file():
        build(onnx_path, path, EngineOptions(min=shape, opt=shape, max=shape))
    return path


def artifact_for(kind: str, checkpoint: Path, workdir: Path, shape: tuple[int, int, int, int],
                 device: str, engine: Path | None = None) -> Path:  # fmt: skip
    """The file a variant opens, built into `workdir` when needed."""
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "checkpoint":
        return checkpoint
    if kind.startswith("onnx"):
        return build_onnx(checkpoint, workdir, fp16=kind == "onnx-fp16", argmax=kind == "onnx-argmax",
                          int8="uint8" if kind == "onnx-int8" else None)
    if kind == "aoti":
        return build_aoti(checkpoint, workdir, shape, device)
    if kind == "engine-int8":
        return build_engine(checkpoint, workdir, shape, int8=True)
    return engine or build_engine(checkpoint, workdir, shape)


def open_variant(variant: Variant, checkpoint: Path, workdir: Path, shape: tuple[int, int, int, int],
                 threads: int | None, engine: Path | None = None) -> tuple[Runtime, Path]:  # fmt: skip
    """Build the variant's artifact if needed, open it with the variant's options and activate it."""
    path = artifact_for(variant.artifact, checkpoint, workdir, shape, variant.device, engine)
    runtime = open_runtime(path, variant.open_options(threads))
    runtime.activate()
    return runtime, path


def failure_reason(exc: Exception) -> str:
    """One line for a report's "skipped" list."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"
