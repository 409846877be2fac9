"""The runtime configurations a benchmark can measure, and which of them can run here.

A variant is a recipe (sunet_deploy.formats: how its artifact is exported; none for the checkpoint
itself) plus one adapter's options (`runtimes.options`); its runtime, device and availability come
from those options, and its precision from the opened runtime's artifact info. The latency and
parity benchmarks and the runtime tests all take their rows from `VARIANTS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from runtimes import availability
from runtimes.options import (AOTInductorOptions, OnnxRuntimeOptions, OpenVINOOptions, PyTorchOptions, RuntimeOptions,
                              TensorRTOptions)
from sunet_deploy import formats
from sunet_deploy.formats import AotiRecipe, EngineRecipe, Int8Recipe, OnnxRecipe

REFERENCE = "pytorch-fp32"
"""Every speed-up and every parity delta is measured against this variant on the same device."""
ONNX_RUNTIME_INT8 = OnnxRecipe(int8=Int8Recipe(activations="uint8"))
"""INT8 for ONNX Runtime on x86: uint8 activations, which its fused kernels take (export.quantize)."""
TENSORRT_INT8 = OnnxRecipe(int8=Int8Recipe(activations="int8"))
"""INT8 for TensorRT: int8 activations (zero point 0), as its explicit quantization takes."""


@dataclass(frozen=True)
class Variant:
    """One row of a report: the recipe of the artifact it opens and the options of its adapter.

    `onnx` is the recipe of the ONNX graph an engine is built from (default: FP32, or the FP16 graph
    where TensorRT has no FP16 builder flag)."""

    name: str
    options: RuntimeOptions
    recipe: OnnxRecipe | AotiRecipe | EngineRecipe | None = None
    onnx: OnnxRecipe | None = None

    def __post_init__(self) -> None:
        if formats.opener(formats.get(self.format), self.options.runtime) is None:
            raise ValueError(f"{self.name}: a {self.format} artifact is not opened by the "
                             f"{self.options.runtime} runtime")

    @property
    def format(self) -> str:
        """The artifact's format (sunet_deploy.formats): "checkpoint" without a recipe."""
        return "checkpoint" if self.recipe is None else formats.by_recipe(self.recipe).name

    @property
    def runtime(self) -> str:
        return self.options.runtime

    @property
    def device(self) -> str:
        return self.options.device

    def availability(self) -> str | None:
        """None when this variant can run here, else why not."""
        return availability(self.options)

    def open_options(self, threads: int | None) -> RuntimeOptions:
        """The options, with the benchmark's thread count where the adapter takes one."""
        return with_threads(self.options, threads)


def with_threads(options: RuntimeOptions, threads: int | None) -> RuntimeOptions:
    """`options` with this thread count where the adapter takes one."""
    if threads and "threads" in {f.name for f in dataclasses.fields(options)}:
        return dataclasses.replace(options, threads=threads)
    return options


CUDA = PyTorchOptions(device="cuda")
CUDA_FP16_CL = dataclasses.replace(CUDA, precision="fp16", channels_last=True)

VARIANTS = {
    v.name: v
    for v in (
        Variant(REFERENCE, PyTorchOptions()),
        Variant("pytorch-fp32-channels-last", PyTorchOptions(channels_last=True)),
        Variant("pytorch-bf16-channels-last", PyTorchOptions(precision="bf16", channels_last=True)),
        Variant("onnxruntime-cpu", OnnxRuntimeOptions(), OnnxRecipe()),
        Variant("onnxruntime-cpu-argmax", OnnxRuntimeOptions(), OnnxRecipe(argmax=True)),
        Variant("onnxruntime-cpu-int8", OnnxRuntimeOptions(), ONNX_RUNTIME_INT8),
        Variant("aoti-cpu", AOTInductorOptions(), AotiRecipe()),
        Variant("openvino-cpu", OpenVINOOptions(), OnnxRecipe()),
        Variant("openvino-cpu-bf16", OpenVINOOptions(inference_precision="bf16"), OnnxRecipe()),
        Variant("openvino-cpu-int8", OpenVINOOptions(), ONNX_RUNTIME_INT8),
        Variant(f"{REFERENCE}-cuda", CUDA),
        Variant("pytorch-fp16-cuda", dataclasses.replace(CUDA, precision="fp16")),
        Variant("pytorch-fp16-channels-last-cuda", CUDA_FP16_CL),
        Variant("pytorch-fp16-cuda-graph", dataclasses.replace(CUDA_FP16_CL, cuda_graph=True)),
        Variant("pytorch-fp16-cuda-graph-argmax", dataclasses.replace(CUDA_FP16_CL, cuda_graph=True, argmax=True)),
        Variant("pytorch-fp16-compile-max-autotune", dataclasses.replace(CUDA_FP16_CL, compile="max-autotune")),
        Variant("onnxruntime-cuda", OnnxRuntimeOptions(provider="cuda"), OnnxRecipe()),
        Variant("onnxruntime-cuda-fp16", OnnxRuntimeOptions(provider="cuda"), OnnxRecipe(fp16=True)),
        Variant("onnxruntime-tensorrt", OnnxRuntimeOptions(provider="tensorrt"), OnnxRecipe()),
        Variant("onnxruntime-tensorrt-fp16",
                OnnxRuntimeOptions(provider="tensorrt", provider_options={"trt_fp16_enable": "1"}), OnnxRecipe()),
        Variant("tensorrt", TensorRTOptions(), EngineRecipe()),
        Variant("tensorrt-int8", TensorRTOptions(), EngineRecipe(), TENSORRT_INT8),
        Variant("aoti-cuda", AOTInductorOptions(device="cuda"), AotiRecipe(device="cuda")),
    )
}


def reference_name(device: str) -> str:
    return REFERENCE if device == "cpu" else f"{REFERENCE}-{device}"


def variants_for(device: str, names: list[str] | None = None) -> list[Variant]:
    """The variants of one device (reference first), or the named ones (the device's reference added)."""
    unknown = sorted(set(names or ()) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    chosen = names or [n for n, v in VARIANTS.items() if v.device == device]
    reference = reference_name(device)
    return [VARIANTS[reference]] + [VARIANTS[n] for n in chosen if n != reference]


def split_available(variants: list[Variant]) -> tuple[list[Variant], dict[str, str]]:
    """(the variants that can run here, {name: reason} for those that cannot)."""
    skipped = {v.name: reason for v in variants if (reason := v.availability())}
    return [v for v in variants if v.name not in skipped], skipped
