"""The few lines that call TensorRT to build an engine (everything else is in export.tensorrt).

Works with TensorRT 10.x and 11.x, told apart by capability, never by version string, and never by
hard-coded enum values: 10.x has `BuilderFlag.FP16` (weakly typed networks where the builder may pick
FP16; deprecated since 10.12), 11.x removed it and every network is strongly typed (FP16 must be in
the ONNX graph itself). So `NetworkDefinitionCreationFlag.STRONGLY_TYPED` (1 in 10.x) is asked for
only where weak typing exists; in 11.x it is 0, deprecated and ignored, and 1 means
PREFER_JIT_PYTHON_PLUGINS. TF32 (on by default) is cleared unless asked for, so an "fp32" engine
computes in FP32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class BuildError(RuntimeError):
    """A build that cannot start (bad input, missing TensorRT or GPU); the message says what to do."""


class TensorRTBuildError(RuntimeError):
    """TensorRT refused the model: parse errors or a failed build, with TensorRT's own messages."""


@dataclass(frozen=True)
class BuildPlan:
    """How to ask TensorRT for the requested precision."""

    precision: str  # "fp16" or "fp32": what the engine is expected to run in
    strongly_typed: bool  # the ONNX graph's types are binding (FP16 graph, or TensorRT 11)
    fp16_flag: bool  # set BuilderFlag.FP16 (TensorRT 10 with an FP32 graph)


@dataclass(frozen=True)
class BuildSettings:
    onnx_path: Path
    input_name: str
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # min, opt, max
    workspace_bytes: int
    optimization_level: int
    timing_cache: bytes | None  # a previous cache to start from
    timing_cache_path: Path | None = None  # where it came from (for messages)
    tf32: bool = False  # allow TF32 for FP32 layers (TensorRT's default; off unless asked for)


@dataclass(frozen=True)
class BuildResult:
    engine: bytes
    inspector_json: str
    io_dtypes: dict[str, str]  # tensor name -> numpy dtype name, as the engine binds it
    timing_cache: bytes | None  # None when TensorRT kept none


def fp16_builder_flag(trt):
    """BuilderFlag.FP16 on TensorRT 10.x; None on 11.x, which removed it (strongly typed only). The one
    place that probes for it, so that no code path names it where it does not exist."""
    return getattr(trt.BuilderFlag, "FP16", None)


def has_fp16_builder_flag(trt) -> bool:
    """True for TensorRT 10.x (BuilderFlag.FP16 exists), False for 11.x (strongly typed only)."""
    return fp16_builder_flag(trt) is not None


def run_builder(trt, plan: BuildPlan, settings: BuildSettings) -> BuildResult:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, plan))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(settings.onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise TensorRTBuildError(f"{settings.onnx_path}: TensorRT's ONNX parser failed:\n  " + "\n  ".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
    config.builder_optimization_level = settings.optimization_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if plan.fp16_flag:
        config.set_flag(fp16_builder_flag(trt))
    if not settings.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    profile.set_shape(settings.input_name, *settings.profile)
    config.add_optimization_profile(profile)
    _attach_timing_cache(config, settings)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTBuildError("TensorRT could not build the engine (see its log above)")
    engine_bytes = bytes(serialized)
    engine = trt.Runtime(logger).deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise TensorRTBuildError("TensorRT built the engine but could not load it back (out of GPU memory? "
                                 "see its log above)")
    inspector = engine.create_engine_inspector()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    io_dtypes = {name: _dtype_name(trt, engine.get_tensor_dtype(name)) for name in names}
    cache = config.get_timing_cache()
    return BuildResult(engine_bytes, inspector.get_engine_information(trt.LayerInformationFormat.JSON), io_dtypes,
                       bytes(cache.serialize()) if cache is not None else None)


def _attach_timing_cache(config, settings: BuildSettings) -> None:
    """Start from the given cache and stop here, before the slow build, when TensorRT refuses it:
    `create_timing_cache` returns None for data it cannot read, `set_timing_cache` returns False for a
    cache whose CUDA device properties differ from this GPU's (pyCoreDoc.h). Polygraphy instead builds
    with an empty cache and ignores set_timing_cache's result; a user who asked for a cache is told."""
    cache = config.create_timing_cache(settings.timing_cache or b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        source = settings.timing_cache_path or "the timing cache"
        raise BuildError(f"{source}: TensorRT refused this timing cache (written on another GPU, or not readable "
                         "by this TensorRT); delete it or pass another --timing-cache")


def _dtype_name(trt, dtype) -> str:
    """numpy's name for an engine tensor type; TensorRT's name where numpy has none (BF16, FP8)."""
    try:
        return trt.nptype(dtype).__name__
    except TypeError:
        return getattr(dtype, "name", str(dtype)).lower()


def _network_flags(trt, plan: BuildPlan) -> int:
    """Ask for a strongly typed network only where weak typing exists (10.x); 11.x is always strongly typed."""
    if plan.strongly_typed and has_fp16_builder_flag(trt):
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0
