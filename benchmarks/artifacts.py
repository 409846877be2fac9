"""Build the artifacts a benchmark needs from one checkpoint (ONNX, AOTInductor), cached in a work dir.

Artifacts are named after the checkpoint's SHA-256, so a changed checkpoint is never measured
through a stale export. TensorRT engines come from `python -m export.tensorrt` (built here for
the measured shape, or passed in with --engine).
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import torch

from runtimes import Runtime, open_runtime
from sunet_deploy.checkpoint import save_checkpoint
from sunet_deploy.fileio import file_sha256
from sunet_deploy.metadata import ModelMetadata
from sunet_deploy.models import ModelSpec, build_model
from sunet_deploy.preprocess import voc_palette


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


def build_onnx(checkpoint: Path, workdir: Path, fp16: bool = False) -> Path:
    """ONNX model (FP32, or FP16 inside with FP32 inputs/outputs) with dynamic batch/height/width."""
    from export.onnx import export_onnx

    suffix = "-fp16" if fp16 else ""
    path = workdir / f"{checkpoint.stem}-{file_sha256(checkpoint)[:12]}{suffix}.onnx"
    if not path.is_file():
        export_onnx(checkpoint, path, fp16=fp16)
    return path


def build_aoti(checkpoint: Path, workdir: Path, shape: tuple[int, int, int, int], device: str) -> Path:
    """AOTInductor package for one input shape, compiled with freezing (weights as constants, oneDNN
    prepacked weights and channels-last layouts on CPU) but without freezing's binary folding."""
    from export.aoti import export_aoti

    n, _, h, w = shape
    path = workdir / f"{checkpoint.stem}-{file_sha256(checkpoint)[:12]}-{device}-{n}x{h}x{w}-frozen.pt2"
    if not path.is_file():
        print(f"compiling {path.name} with AOTInductor (a minute or several on a small CPU)", flush=True)
        # compile_threads=1: no pool of compile workers left behind to load the CPU while we measure
        with torch._inductor.config.patch(freezing=True, compile_threads=1), _no_binary_folding():
            export_aoti(checkpoint, path, size=(h, w), batch=n, device=device)
    return path


def _no_binary_folding():
    """Freezing's binary folding (torch 2.13) folds a BatchNorm that follows a ConvTranspose2d with
    equal input and output channels into the weight's input-channel axis: wrong logits (SUNet's
    decoders; caught by benchmarks.parity). An empty pass leaves BN as a fused pointwise op."""
    from torch._inductor.fx_passes import freezing_patterns
    from torch._inductor.pattern_matcher import PatternMatcherPass

    freezing_patterns.lazy_init()  # registers the patterns into the real pass first (once per process)
    return mock.patch.object(freezing_patterns, "binary_folding_pass", PatternMatcherPass())


def artifact_for(kind: str, checkpoint: Path, workdir: Path, shape: tuple[int, int, int, int],
                 device: str, engine: Path | None = None) -> Path:  # fmt: skip
    """The file a variant opens, built into `workdir` when needed."""
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "checkpoint":
        return checkpoint
    if kind in ("onnx", "onnx-fp16"):
        return build_onnx(checkpoint, workdir, fp16=kind == "onnx-fp16")
    if kind == "aoti":
        return build_aoti(checkpoint, workdir, shape, device)
    return engine or build_engine(checkpoint, workdir, shape)


def build_engine(checkpoint: Path, workdir: Path, shape: tuple[int, int, int, int]) -> Path:
    """FP16 TensorRT engine for one input shape, built by export.tensorrt (from the FP16 ONNX on
    TensorRT 11, which has no FP16 builder flag)."""
    from export.tensorrt import import_tensorrt
    from export.tensorrt import main as build_main
    from export.trt_build import has_fp16_builder_flag

    onnx_path = build_onnx(checkpoint, workdir, fp16=not has_fp16_builder_flag(import_tensorrt()))
    dims = "x".join(map(str, shape))
    path = workdir / f"{onnx_path.stem}-{dims}.engine"
    if not path.is_file() and build_main([str(onnx_path), "-o", str(path), "--min", dims, "--opt", dims, "--max", dims]):
        raise LookupError("the TensorRT engine build failed (see the log above)")
    return path


def open_variant(variant, checkpoint: Path, workdir: Path, shape: tuple[int, int, int, int],
                 threads: int | None, engine: Path | None = None) -> tuple[Runtime, Path]:  # fmt: skip
    """Build the variant's artifact if needed, open it with the variant's adapter and activate it."""
    path = artifact_for(variant.artifact, checkpoint, workdir, shape, variant.device, engine)
    runtime = open_runtime(path, variant.runtime, **variant.open_options(threads))
    runtime.activate()
    return runtime, path


def failure_reason(exc: Exception) -> str:
    """One line for a report's "skipped" list."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"
