"""`python -m export.tensorrt model.onnx -o model.engine`: a TensorRT engine with its build environment.

FP16 by default (`--fp32` for FP32). TensorRT 10.x builds an FP32 ONNX with the FP16 builder flag;
TensorRT 11.x builds strongly typed networks only, so FP16 there needs the FP16 ONNX from
`python -m export.onnx --fp16` (an FP16 ONNX is always built strongly typed). After the build the
engine inspector (detailed profiling verbosity) shows which layers run in FP16: an engine whose
convolutions are not mostly FP16 is refused instead of being called FP16. TF32 (TensorRT's default
for FP32 layers) is off unless --tf32 is given, so an FP32 engine computes in FP32.

The optimization profile spans --min/--opt/--max input shapes (NxCxHxW). Dimensions fixed in the
ONNX graph are taken from it; dynamic ones default to min 1x3x64x64, opt 1x3x512x512, max
4x3x1024x1024. Next to the engine, model.engine.json records the TensorRT version, the GPU and its
compute capability, precision, profile, ONNX sha256, the model metadata and the tensors; runtimes
refuse the engine on another TensorRT or GPU. Outputs are written atomically, and only on success.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from export.cli import parse_export_args
from export.common import check_writable
from export.opcheck import check_graph, format_report
from export.trt_build import BuildError, BuildPlan, BuildResult, BuildSettings, TensorRTBuildError, \
    has_fp16_builder_flag, run_builder
from sunet_deploy import formats
from sunet_deploy.artifact import ArtifactError, OnnxInfo, read_onnx_info
from sunet_deploy.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from sunet_deploy.engine_env import EngineEnvironmentError, EngineSidecar, GpuInfo, query_gpu, write_engine_sidecar
from sunet_deploy.fileio import atomic_write_bytes
from sunet_deploy.formats import DEFAULT_PROFILE, EngineRecipe


class EngineRefused(BuildError):
    """The engine was built but fails a check (its precision); nothing was written."""


@dataclass(frozen=True)
class PrecisionSummary:
    """How many layers the engine inspector shows in each precision ('fp16', 'fp32', 'int8', ...)."""

    convolutions: dict[str, int]
    layers: dict[str, int]  # every layer with a numeric type, convolutions included
    schema: str = "10.x"  # which inspector JSON schema was read: "10.x" or "11.x"
    float_outputs: dict[str, int] = dataclasses.field(default_factory=dict)  # layers whose output is a float

    @property
    def float_type(self) -> str | None:
        """The float kind most layer outputs have ('fp16', 'fp32'...): what an INT8 engine runs the rest in."""
        return max(self.float_outputs, key=self.float_outputs.get) if self.float_outputs else None

    def share(self, precision: str) -> float:
        """Share of convolutions in `precision` (where SUNet spends its time), else of all typed layers."""
        counts = self.convolutions if sum(self.convolutions.values()) else self.layers
        total = sum(counts.values())
        return counts.get(precision, 0) / total if total else 0.0

    @property
    def typed_layers(self) -> int:
        return sum(self.layers.values())

    def describe(self) -> str:
        def counts(by_kind: dict[str, int]) -> str:
            return ", ".join(f"{n} {kind.upper()}" for kind, n in sorted(by_kind.items())) or "none"

        return (f"convolution layers: {counts(self.convolutions)}; all typed layers: {counts(self.layers)}; "
                f"float outputs: {counts(self.float_outputs)}")


def read_onnx(path: Path) -> OnnxInfo:
    """The ONNX model's info (sunet_deploy.artifact.read_onnx_info), its problems as a BuildError."""
    try:
        return read_onnx_info(path)
    except ArtifactError as exc:
        raise BuildError(str(exc)) from exc


def derive_profile(input_shape: list, min_shape=None, opt_shape=None, max_shape=None) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max): given shapes, else the graph's fixed dimensions, else DEFAULT_PROFILE."""
    given = (min_shape, opt_shape, max_shape)
    profile = []
    for shape, default in zip(given, DEFAULT_PROFILE):
        if shape is None:
            shape = tuple(d if isinstance(d, int) and d > 0 else dflt for d, dflt in zip(input_shape, default))
        profile.append(tuple(shape))
    names = ("--min", "--opt", "--max")
    for name, shape in zip(names, profile):
        if len(shape) != len(input_shape):
            raise BuildError(f"{name} {_fmt(shape)} has {len(shape)} dimensions, "
                             f"the model input has {len(input_shape)}")
        fixed = [(i, d) for i, d in enumerate(input_shape) if isinstance(d, int) and d > 0 and shape[i] != d]
        if fixed:
            index, size = fixed[0]
            raise BuildError(f"{name} {_fmt(shape)}: dimension {index} is fixed to {size} in the ONNX graph")
    low, opt, high = profile
    if not all(a <= b <= c for a, b, c in zip(low, opt, high)):
        raise BuildError(f"the profile needs min <= opt <= max in every dimension, got "
                         f"min {_fmt(low)}, opt {_fmt(opt)}, max {_fmt(high)}")
    return tuple(profile)


def _fmt(shape) -> str:
    return "x".join(map(str, shape))


def refuse_unparseable(path: Path, model, trt_version: str) -> None:
    """The operator check against the TensorRT that will build (export.opcheck), before the slow build."""
    try:
        issues = check_graph(model, target=trt_version)
    except ValueError as exc:  # a version string that names no release
        raise BuildError(f"cannot tell which TensorRT release this is ({exc})") from exc
    if issues:
        raise BuildError(f"{path}: TensorRT {trt_version} cannot parse this graph\n"
                         + format_report(issues, len(model.graph.node)))


def plan_build(fp16_flag_available: bool, onnx_precision: str, requested: str) -> BuildPlan:
    """Which TensorRT mechanism gives the requested precision, or a BuildError saying what to export.

    An INT8 (Q/DQ) graph is always built strongly typed: explicit quantization, its Q/DQ nodes say
    which tensors are INT8, on 10.x and 11.x alike (11.x has no implicit INT8 and no calibrators)."""
    if onnx_precision == "int8":
        if requested == "fp32":
            raise BuildError("this ONNX model is INT8 (Q/DQ nodes); for an FP32 engine export it without --int8")
        return BuildPlan("int8", strongly_typed=True, fp16_flag=False)
    if onnx_precision == "fp16":
        if requested == "fp32":
            raise BuildError("this ONNX model is FP16; for an FP32 engine export it without --fp16")
        return BuildPlan("fp16", strongly_typed=True, fp16_flag=False)
    if requested == "fp32":
        return BuildPlan("fp32", strongly_typed=not fp16_flag_available, fp16_flag=False)
    if not fp16_flag_available:
        raise BuildError("this TensorRT builds strongly typed networks only (no BuilderFlag.FP16, TensorRT 11+): "
                         "FP16 must be in the graph; export with python -m export.onnx --fp16, or build with --fp32")
    return BuildPlan("fp16", strongly_typed=False, fp16_flag=True)


def summarize_precision(inspector_json: str) -> PrecisionSummary:
    """Count the layers of each precision in the engine inspector's JSON (ProfilingVerbosity.DETAILED),
    either schema: 10.x writes a tensor's type in "Format/Datatype" and lists "Bindings"; 11.x splits it
    into "Format" and "Datatype" and lists "I/O Tensors" (objects with "DataType").

    A layer's precision is its output's type, except that a convolution is INT8 when its (first) input
    or its weights are: NVIDIA's explicit-quantization guide fuses a convolution with a float residual
    Add, or one followed by a float layer, into an INT8 convolution with a float output."""
    info = json.loads(inspector_json)
    layers = info.get("Layers", [])
    if layers and not isinstance(layers[0], dict):
        raise BuildError("the engine inspector listed layer names only: the engine was not built with "
                         "ProfilingVerbosity.DETAILED, so its precision cannot be proven")
    computing = [layer for layer in layers if layer.get("LayerType") != "Reformat"]  # Q layers are Reformats too
    typed = [(layer, _layer_precision(layer)) for layer in computing]
    typed = [(layer, kind) for layer, kind in typed if kind is not None]
    outputs = [_output_precision(layer) for layer in computing]
    return PrecisionSummary(dict(Counter(kind for layer, kind in typed if _is_convolution(layer))),
                            dict(Counter(kind for _, kind in typed)),
                            schema="11.x" if "I/O Tensors" in info or _split_datatype(layers) else "10.x",
                            float_outputs=dict(Counter(kind for kind in outputs if kind not in (None, "int8"))))


def require_precision(summary: PrecisionSummary, precision: str, min_share: float) -> None:
    """Refuse to call an engine FP16 or INT8 unless the inspector shows it."""
    name = precision.upper()
    if summary.typed_layers == 0:
        raise EngineRefused(f"the engine inspector reported no layer data types, so {name} cannot be proven; "
                            f"not writing an engine labelled {name}")
    if summary.share(precision) < min_share:
        raise EngineRefused(f"asked for {name}, but only {summary.share(precision):.0%} of the layers run in {name} "
                            f"(--min-{precision}-share {min_share:.0%}); not writing an engine labelled {name}")


DATATYPE_KEYS = ("Datatype", "DataType", "Format/Datatype")  # 11.x layer tensors, 11.x I/O tensors, 10.x
PRECISION_WORDS = (("bf16", {"bf16", "bfloat16"}), ("fp16", {"fp16", "half", "float16"}), ("fp8", {"fp8"}),
                   ("fp32", {"fp32", "float", "float32"}), ("int8", {"int8"}))


def _split_datatype(layers: list) -> bool:
    return any("Datatype" in t for layer in layers for t in layer.get("Outputs") or [])


def _is_convolution(layer: dict) -> bool:
    return "conv" in (layer.get("LayerType", "") + layer.get("ParameterType", "")).lower()


def _output_precision(layer: dict) -> str | None:
    return tensor_precision((layer.get("Outputs") or [{}])[0])


def _layer_precision(layer: dict) -> str | None:
    """'int8' for a convolution with an INT8 input or INT8 weights ("Weights": {"Type": "Int8"}), else the
    float kind of the first output ('fp16', 'fp32'...); None for layers without a float or INT8 type."""
    if _is_convolution(layer):
        weights = str((layer.get("Weights") or {}).get("Type", "")).lower()
        if weights == "int8" or tensor_precision((layer.get("Inputs") or [{}])[0]) == "int8":
            return "int8"
    return _output_precision(layer)


def tensor_precision(tensor: dict) -> str | None:
    """The float kind of an inspector tensor entry: "Half", "Row major linear FP32", "Channel major FP16
    format where channel % 8 == 0" -> 'fp16'/'fp32'...; None for integer or unknown types."""
    text = next((tensor[key] for key in DATATYPE_KEYS if key in tensor), "")
    words = set(re.findall(r"[a-z0-9]+", str(text).lower()))
    return next((kind for kind, names in PRECISION_WORDS if words & names), None)


def make_sidecar(info: OnnxInfo, result: BuildResult, plan: BuildPlan, gpu: GpuInfo, trt_version: str,
                 profile, summary: PrecisionSummary, build: dict) -> EngineSidecar:
    def with_engine_dtype(tensor: dict) -> dict:
        return {**tensor, "dtype": result.io_dtypes.get(tensor["name"], tensor["dtype"])}

    artifact = dataclasses.replace(info.artifact, format="tensorrt", precision=plan.precision,
                                   input_shape=profile[2], profile=profile)
    return EngineSidecar(
        artifact=artifact, tensorrt_version=trt_version, gpu=gpu,
        onnx_sha256=info.sha256, engine_sha256=hashlib.sha256(result.engine).hexdigest(),
        inputs=[with_engine_dtype(t) for t in info.inputs], outputs=[with_engine_dtype(t) for t in info.outputs],
        build={**build, "strongly_typed": plan.strongly_typed, "fp16_flag": plan.fp16_flag,
               f"{plan.precision}_share": round(summary.share(plan.precision), 4),
               "precision_evidence": summary.describe()},
    )


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise BuildError(f"TensorRT is not installed: {formats.get('tensorrt').install}") from exc
    return tensorrt


def build_engine(onnx_path: str | os.PathLike, output: str | os.PathLike, options: EngineRecipe = EngineRecipe(),
                 trt=None, gpu: GpuInfo | None = None) -> EngineSidecar:
    """Check everything that can be checked cheaply, build, prove the precision, then write the engine
    and its sidecar (atomically, only on success). Returns the sidecar: the build's evidence.

    Raises BuildError, TensorRTBuildError, EngineEnvironmentError or OSError.
    """
    onnx_path, output = Path(onnx_path), Path(output)
    info = read_onnx(onnx_path)
    check_writable(output)
    profile = derive_profile(info.inputs[0]["shape"], options.min, options.opt, options.max)
    trt = trt or import_tensorrt()
    refuse_unparseable(onnx_path, info.model, trt.__version__)
    gpu = gpu or query_gpu(0)
    plan = plan_build(has_fp16_builder_flag(trt), info.precision, "fp32" if options.fp32 else "fp16")
    cache = options.timing_cache.read_bytes() if options.timing_cache and options.timing_cache.is_file() else None
    print(f"building a {plan.precision} engine with TensorRT {trt.__version__} on {gpu.describe()}, "
          f"{'strongly typed' if plan.strongly_typed else 'FP16 builder flag' if plan.fp16_flag else 'FP32'}"
          f"{', TF32 allowed' if options.tf32 else ''}, "
          f"profile min {_fmt(profile[0])} opt {_fmt(profile[1])} max {_fmt(profile[2])} (minutes for large models)",
          flush=True)
    settings = BuildSettings(onnx_path, info.inputs[0]["name"], profile, int(options.workspace_gib * 2**30),
                             options.optimization_level, cache, options.timing_cache, options.tf32)
    result = run_builder(trt, plan, settings)
    summary = summarize_precision(result.inspector_json)
    print(f"engine inspector: {summary.describe()}")
    if plan.precision != "fp32":
        require_precision(summary, plan.precision, options.min_share(plan.precision))
    if plan.precision == "int8" and summary.float_type not in (None, "fp16"):
        print(f"note: the layers outside INT8 run in {summary.float_type.upper()}, the type of the Q/DQ graph's float "
              "parts (a strongly typed build takes it from the graph); python -m export.onnx --int8 --int8-float fp16 "
              "gives INT8+FP16")
    sidecar = make_sidecar(info, result, plan, gpu, trt.__version__, profile, summary,
                           {"workspace_gib": options.workspace_gib, "optimization_level": options.optimization_level,
                            "tf32": options.tf32, "inspector_schema": summary.schema,
                            "float_type": summary.float_type})
    atomic_write_bytes(output, result.engine)
    write_engine_sidecar(output, sidecar)
    if options.timing_cache and result.timing_cache is not None:
        atomic_write_bytes(options.timing_cache, result.timing_cache)
    return sidecar


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parse_export_args(argv, "python -m export.tensorrt", __doc__, ("onnx", "ONNX model written by python -m export.onnx"),
                             "engine to write; its build environment goes to OUTPUT.json", EngineRecipe)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        sidecar = build_engine(args.onnx, args.output, args.recipe)
    except (EngineRefused, TensorRTBuildError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (BuildError, EngineEnvironmentError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    size_mb = args.output.stat().st_size / 2**20
    print(f"wrote {args.output} ({size_mb:.1f} MiB, {sidecar.artifact.precision}) and {args.output}.json "
          f"in {time.perf_counter() - start:.1f} s")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
