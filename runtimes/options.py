"""Every adapter's options, declared once (torch-free, imports nothing of runtimes/).

Each adapter has one frozen dataclass here. Its fields are the adapter's keyword options, and from
them come the `runtimes.predict` flags (`add_flags` / `from_args`), the benchmark rows and the test
matrix. Whether options can run on this machine is the adapter's to say (`Runtime.availability`,
`runtimes.availability`): an adapter owns its imports. Adding an option is adding a field with
`option(...)`; nothing else needs to know about it. Which class belongs to which adapter is the
format table's (sunet_deploy.formats).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import ClassVar

from sunet_deploy import formats
from sunet_deploy.options import add_option_flags, changed, check_choices, given_options, key_value, option
from sunet_deploy.options import from_args  # noqa: F401  (runtimes.predict reads options through here)

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
"""ONNX Runtime's execution providers by the name --provider takes."""
THREADS_HELP = "onnxruntime, openvino: intra-op threads (default: all cores)"


@dataclass(frozen=True)
class RuntimeOptions:
    """Base of the per-adapter options; `runtime` names the adapter in the format table."""

    runtime: ClassVar[str]

    @property
    def device(self) -> str:
        """"cpu" or "cuda": where the computation runs."""
        return "cpu"

    @property
    def precision(self) -> str | None:
        """The precision the runtime computes in when the options choose it (else the artifact's)."""
        return None

    def changed(self) -> dict:
        """The options that differ from the defaults (for report rows and messages)."""
        return changed(self)


@dataclass(frozen=True)
class PyTorchOptions(RuntimeOptions):
    runtime: ClassVar[str] = "pytorch"
    device: str = option("cpu", "pytorch, aoti: cpu or cuda (cuda:N for another GPU)")
    precision: str = option("fp32", "pytorch: compute precision", choices=("fp32", "fp16", "bf16"))
    channels_last: bool = option(False, "pytorch: channels_last memory format")
    cuda_graph: bool = option(False, "pytorch on cuda: capture one CUDA graph per input shape and replay it")
    argmax: bool = option(False, "pytorch: return labels (argmax on the device) instead of logits")
    compile: str | None = option(None, "pytorch: torch.compile the model with this mode (compiled at the first "
                                 "call of each input shape)", choices=("default", "reduce-overhead", "max-autotune"))


@dataclass(frozen=True)
class OnnxRuntimeOptions(RuntimeOptions):
    runtime: ClassVar[str] = "onnxruntime"
    provider: str = option("cpu", "onnxruntime: execution provider", choices=tuple(PROVIDERS))
    provider_options: dict = option({}, "onnxruntime: an execution-provider option, e.g. trt_fp16_enable=1 "
                                    "(repeatable)", parse=key_value)
    threads: int | None = option(None, THREADS_HELP)
    io_binding: bool | None = option(None, "onnxruntime: bind inputs/outputs to device buffers "
                                     "(default: on for GPU providers)")
    device_id: int = option(0, "onnxruntime, tensorrt: CUDA device index")

    @property
    def device(self) -> str:
        return "cpu" if self.provider == "cpu" else "cuda"

    @property
    def precision(self) -> str | None:
        fp16 = str(self.provider_options.get("trt_fp16_enable", "")).lower() in ("1", "true")
        return "fp16" if self.provider == "tensorrt" and fp16 else None


@dataclass(frozen=True)
class OpenVINOOptions(RuntimeOptions):
    """OpenVINO's CPU plugin, reading an ONNX file directly (python -m runtimes.predict --runtime openvino)."""

    runtime: ClassVar[str] = "openvino"
    threads: int | None = option(None, THREADS_HELP)
    inference_precision: str = option("fp32", "openvino: precision of the float parts; bf16 only on CPUs with "
                                      "AVX512_BF16/AMX, which OpenVINO would otherwise pick silently (default fp32)",
                                      choices=("fp32", "bf16"))
    performance_hint: str = option("latency", "openvino: LATENCY (one request at a time, default) or THROUGHPUT "
                                   "(several parallel streams)", choices=("latency", "throughput"))

    def __post_init__(self) -> None:
        check_choices(self)

    @property
    def precision(self) -> str | None:
        return "bf16" if self.inference_precision == "bf16" else None


@dataclass(frozen=True)
class TensorRTOptions(RuntimeOptions):
    runtime: ClassVar[str] = "tensorrt"
    device_id: int = option(0, "onnxruntime, tensorrt: CUDA device index")
    buffers: str = option("auto", "tensorrt: device buffers from torch or pycuda (auto: torch if already imported)",
                          choices=("auto", "torch", "pycuda"))

    @property
    def device(self) -> str:
        return "cuda"


@dataclass(frozen=True)
class AOTInductorOptions(RuntimeOptions):
    runtime: ClassVar[str] = "aoti"
    device: str = option("cpu", "pytorch, aoti: cpu or cuda (cuda:N for another GPU)")


@dataclass(frozen=True)
class TritonOptions(RuntimeOptions):
    """A model served by Triton Inference Server (triton://HOST:PORT/MODEL or triton+grpc://...)."""

    runtime: ClassVar[str] = "triton"
    server_timeout: int = option(60, "triton: seconds to wait for the server's answer to one request")
    shared_memory: str = option("none", "triton: pass tensors through shared memory, with a server on this host "
                                "(system) or on this client's GPU (cuda)", choices=("none", "system", "cuda"))

    @property
    def device(self) -> str:
        return "cuda" if self.shared_memory == "cuda" else "cpu"


def options_class(runtime: str) -> type[RuntimeOptions]:
    """The options dataclass of the adapter named `runtime`, as the format table names it."""
    return formats.load(formats.by_runtime(runtime).options)


def all_options() -> list[type[RuntimeOptions]]:
    return [formats.load(f.options) for f in formats.formats()]


# ---------------------------------------------------------------- command-line flags


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per option field of every adapter (a field shared by adapters is one flag)."""
    group = parser.add_argument_group("runtime options (each applies to the runtimes its help names)")
    add_option_flags(group, all_options())


def given_flags(args: argparse.Namespace) -> set[str]:
    """The option fields given on the command line (flags default to absent)."""
    return given_options(all_options(), args)
