"""The few lines that call TensorRT to build an engine (everything else is in export.tensorrt).

Works with TensorRT 10.x and 11.x, told apart by capability, never by version string: 10.x has
`BuilderFlag.FP16` (weakly typed networks where the builder may pick FP16), 11.x removed it and
every network is strongly typed (FP16 must be in the ONNX graph itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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


@dataclass(frozen=True)
class BuildResult:
    engine: bytes
    inspector_json: str
    io_dtypes: dict[str, str]  # tensor name -> numpy dtype name, as the engine binds it
    timing_cache: bytes


def has_fp16_builder_flag(trt) -> bool:
    """True for TensorRT 10.x (BuilderFlag.FP16 exists), False for 11.x (strongly typed only)."""
    return hasattr(trt.BuilderFlag, "FP16")


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
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(settings.input_name, *settings.profile)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(settings.timing_cache or b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTBuildError("TensorRT could not build the engine (see its log above)")
    engine_bytes = bytes(serialized)
    engine = trt.Runtime(logger).deserialize_cuda_engine(engine_bytes)
    inspector = engine.create_engine_inspector()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    io_dtypes = {name: trt.nptype(engine.get_tensor_dtype(name)).__name__ for name in names}
    return BuildResult(engine_bytes, inspector.get_engine_information(trt.LayerInformationFormat.JSON), io_dtypes,
                       bytes(config.get_timing_cache().serialize()))


def _network_flags(trt, plan: BuildPlan) -> int:
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 1 << int(strongly_typed) if plan.strongly_typed and strongly_typed is not None else 0
