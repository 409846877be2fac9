"""Build the artifacts a benchmark needs from one checkpoint, through the exporters' Python APIs.

Artifacts are cached in a work dir under a name that carries a hash of what made them: the source
file's SHA-256 and the recipe (sunet_deploy.formats), so neither a changed checkpoint nor a changed
export setting is ever measured through a stale file. Each one is made by the same function as
its CLI (`export_onnx`, `export_aoti`, `build_engine`), so the measured file is the shipped one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from runtimes import Runtime, open_runtime
from sunet_deploy import formats
from sunet_deploy.checkpoint import save_checkpoint
from sunet_deploy.fileio import file_sha256
from sunet_deploy.formats import AotiRecipe, EngineRecipe, OnnxRecipe
from sunet_deploy.metadata import ModelMetadata
from sunet_deploy.models import ModelSpec, build_model
from sunet_deploy.options import digest
from sunet_deploy.pipeline.palettes import voc_palette

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


def cached_path(source: Path, workdir: Path, recipe) -> Path:
    """Where the artifact `recipe` makes from `source` is cached: named by a hash of both."""
    suffix = formats.by_recipe(recipe).suffixes[0]
    return workdir / f"{source.stem}-{digest(file_sha256(source), recipe)}{suffix}"


def build_onnx(checkpoint: Path, workdir: Path, recipe: OnnxRecipe) -> Path:
    """The ONNX model of `recipe` (INT8 calibrated as `python -m export.onnx --int8` calibrates by default)."""
    from export.onnx import export_onnx

    path = cached_path(checkpoint, workdir, recipe)
    if not path.is_file():
        export_onnx(checkpoint, path, recipe)
    return path


def build_aoti(checkpoint: Path, workdir: Path, recipe: AotiRecipe) -> Path:
    """AOTInductor package for one input shape, compiled exactly as `python -m export.aoti` compiles it."""
    from export.aoti import export_aoti

    path = cached_path(checkpoint, workdir, recipe)
    if not path.is_file():
        print(f"compiling {path.name} with AOTInductor (a minute or several on a small CPU)", flush=True)
        export_aoti(checkpoint, path, recipe)
    return path


def build_engine(checkpoint: Path, workdir: Path, recipe: EngineRecipe, onnx: OnnxRecipe | None = None) -> Path:
    """TensorRT engine of `recipe` built from the ONNX graph of `onnx`: by default FP32, or FP16 on
    TensorRT 11, which has no FP16 builder flag."""
    from export.tensorrt import build_engine as build
    from export.tensorrt import import_tensorrt
    from export.trt_build import has_fp16_builder_flag

    onnx = onnx or OnnxRecipe(fp16=not has_fp16_builder_flag(import_tensorrt()))
    onnx_path = build_onnx(checkpoint, workdir, onnx)
    path = cached_path(onnx_path, workdir, recipe)
    if not path.is_file():
        build(onnx_path, path, recipe)
    return path


def artifact_for(variant: Variant, checkpoint: Path, workdir: Path, shape: tuple[int, int, int, int],
                 engine: Path | None = None) -> Path:  # fmt: skip
    """The file a variant opens, built into `workdir` when needed; AOTInductor packages and engines
    are made for the benchmark's input `shape`."""
    workdir.mkdir(parents=True, exist_ok=True)
    recipe, (n, _, h, w) = variant.recipe, shape
    if recipe is None:
        return checkpoint
    if isinstance(recipe, OnnxRecipe):
        return build_onnx(checkpoint, workdir, recipe)
    if isinstance(recipe, AotiRecipe):
        return build_aoti(checkpoint, workdir, dataclasses.replace(recipe, size=(h, w), batch=n))
    if engine and variant.onnx is None:
        return engine
    return build_engine(checkpoint, workdir, dataclasses.replace(recipe, min=shape, opt=shape, max=shape), variant.onnx)


def open_variant(variant: Variant, checkpoint: Path, workdir: Path, shape: tuple[int, int, int, int],
                 threads: int | None, engine: Path | None = None) -> tuple[Runtime, Path]:  # fmt: skip
    """Build the variant's artifact if needed, open it with the variant's options and activate it."""
    path = artifact_for(variant, checkpoint, workdir, shape, engine)
    runtime = open_runtime(path, variant.open_options(threads))
    runtime.activate()
    return runtime, path


def failure_reason(exc: Exception) -> str:
    """One line for a report's "skipped" list."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"
