"""The runtime configurations a benchmark can measure, and which of them can run here.

A variant is an artifact kind plus one adapter's options (`runtimes.options`); its runtime, device
and availability come from those options, and its precision from the opened runtime's artifact info.
The latency and parity benchmarks and the runtime tests all take their rows from `VARIANTS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from runtimes.options import AOTInductorOptions, OnnxRuntimeOptions, PyTorchOptions, RuntimeOptions, TensorRTOptions

REFERENCE = "pytorch-fp32"
"""Every speed-up and every parity delta is measured against this variant on the same device."""
ARTIFACTS = ("checkpoint", "onnx", "onnx-fp16", "onnx-int8", "onnx-argmax", "aoti", "engine", "engine-int8")


@dataclass(frozen=True)
class Variant:
    """One row of a report: the artifact kind it opens and the options of its adapter."""

    name: str
    artifact: str
    options: RuntimeOptions

    def __post_init__(self) -> None:
        if self.artifact not in ARTIFACTS:
            raise ValueError(f"artifact must be one of {ARTIFACTS}, got {self.artifact!r}")

    @property
    def runtime(self) -> str:
        return self.options.runtime

    @property
    def device(self) -> str:
        return self.options.device

    def availability(self) -> str | None:
        """None when this variant can run here, else why not."""
        return self.options.availability()

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
        Variant(REFERENCE, "checkpoint", PyTorchOptions()),
        Variant("pytorch-fp32-channels-last", "checkpoint", PyTorchOptions(channels_last=True)),
        Variant("pytorch-bf16-channels-last", "checkpoint", PyTorchOptions(precision="bf16", channels_last=True)),
        Variant("onnxruntime-cpu", "onnx", OnnxRuntimeOptions()),
        Variant("onnxruntime-cpu-argmax", "onnx-argmax", OnnxRuntimeOptions()),
        Variant("onnxruntime-cpu-int8", "onnx-int8", OnnxRuntimeOptions()),
        Variant("aoti-cpu", "aoti", AOTInductorOptions()),
        Variant(f"{REFERENCE}-cuda", "checkpoint", CUDA),
        Variant("pytorch-fp16-cuda", "checkpoint", dataclasses.replace(CUDA, precision="fp16")),
        Variant("pytorch-fp16-channels-last-cuda", "checkpoint", CUDA_FP16_CL),
        Variant("pytorch-fp16-cuda-graph", "checkpoint", dataclasses.replace(CUDA_FP16_CL, cuda_graph=True)),
        Variant("pytorch-fp16-cuda-graph-argmax", "checkpoint",
                dataclasses.replace(CUDA_FP16_CL, cuda_graph=True, argmax=True)),
        Variant("pytorch-fp16-compile-max-autotune", "checkpoint",
                dataclasses.replace(CUDA_FP16_CL, compile="max-autotune")),
        Variant("onnxruntime-cuda", "onnx", OnnxRuntimeOptions(provider="cuda")),
        Variant("onnxruntime-cuda-fp16", "onnx-fp16", OnnxRuntimeOptions(provider="cuda")),
        Variant("onnxruntime-tensorrt", "onnx", OnnxRuntimeOptions(provider="tensorrt")),
        Variant("onnxruntime-tensorrt-fp16", "onnx",
                OnnxRuntimeOptions(provider="tensorrt", provider_options={"trt_fp16_enable": "1"})),
        Variant("tensorrt", "engine", TensorRTOptions()),
        Variant("tensorrt-int8", "engine-int8", TensorRTOptions()),
        Variant("aoti-cuda", "aoti", AOTInductorOptions(device="cuda")),
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
