"""Every adapter's options, declared once (torch-free, imports nothing of runtimes/).

Each adapter has one frozen dataclass here. Its fields are the adapter's keyword options, and from
them come the `runtimes.predict` flags (`add_flags` / `values_from_args`), the benchmark rows and the test
matrix. Whether options can run on this machine is the adapter's to say (`Runtime.availability`,
`runtimes.availability`): an adapter owns its imports. Adding an option is adding a field with
`option(...)`; nothing else needs to know about it. Which class belongs to which adapter is the
format table's (sunet_deploy.formats).

Two options are common to every runtime (`COMMON`): `threads` (CPU threads it computes with) and
`device` ("cpu", "cuda" or "cuda:N"). `RuntimeOptions.create(**values)` takes them as each runtime
honours them (a field of the same name, or translated: ONNX Runtime's device is its execution
provider, TensorRT's its device_id) and refuses them in one line naming the runtime where it cannot.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from sunet_deploy import formats
from sunet_deploy.options import add_option_flags, changed, check_choices, given_options, key_value, option
from sunet_deploy.options import from_args, values_from_args  # noqa: F401  (runtimes.predict reads options here)

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
"""ONNX Runtime's execution providers by the name --provider takes."""
THREADS_HELP = "onnxruntime, openvino: intra-op threads (default: all cores)"


COMMON = ("threads", "device")
"""The options every runtime is asked in the same words; `RuntimeOptions.create` maps or refuses them."""
THREADS_HELP = ("pytorch, aoti, onnxruntime: CPU threads the runtime computes with (default: all cores; pytorch "
                "and aoti set torch's intra-op threads while this runtime computes and restore them after, since "
                "torch's setting is process-wide)")
DEVICE_HELP = ("cpu, cuda or cuda:N; pytorch, aoti: where the model runs; onnxruntime: the execution provider "
               "(cuda) and its device; tensorrt: which GPU")


def parse_device(device: str, runtime: str) -> tuple[str, int]:
    """("cpu", 0) or ("cuda", N) from "cpu", "cuda" or "cuda:N"; ValueError naming `runtime` otherwise."""
    kind, _, index = str(device).partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise ValueError(f"the {runtime} runtime: device must be cpu, cuda or cuda:N, got {device!r}")
    return kind, int(index or 0)


@dataclass(frozen=True)
class RuntimeOptions:
    """Base of the per-adapter options; `runtime` names the adapter in the format table."""

    runtime: ClassVar[str]
    cannot: ClassVar[dict[str, str]] = {}
    """Why this runtime cannot honour a common option it has no field for (its refusal's reason)."""

    def __post_init__(self) -> None:
        threads = getattr(self, "threads", None)
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"the {self.runtime} runtime: threads must be a positive integer, got {threads!r}")
        if "device" in {f.name for f in dataclasses.fields(self)}:
            parse_device(self.device, self.runtime)

    @classmethod
    def create(cls, **values) -> "RuntimeOptions":
        """The options from keyword values; the common options (threads, device; None means not given)
        as this runtime honours them. ValueError, one line naming the runtime, for anything it cannot take."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields - set(COMMON))
        if unknown:
            raise ValueError(f"the {cls.runtime} runtime has no option {unknown[0]!r} (its own: "
                             f"{', '.join(sorted(fields)) or 'none'}; every runtime's: {', '.join(COMMON)})")
        common = {name: values.pop(name) for name in COMMON if name in values and name not in fields}
        for name, value in common.items():
            if value is not None:
                values.update(cls._common(name, value, values))
        return cls(**values)

    @classmethod
    def _common(cls, name: str, value, values: dict) -> dict:
        """The fields that honour the common option `name` (a subclass without a field of that name)."""
        reason = cls.cannot.get(name, "it has no such setting")
        raise ValueError(f"the {cls.runtime} runtime cannot take {name}={value!r}: {reason}")

    @property
    def device(self) -> str:
        """"cpu" or "cuda": where the computation runs."""
        return "cpu"

    @property
    def on_cuda(self) -> bool:
        """Whether the computation runs on a CUDA device ("cuda" or "cuda:N")."""
        return str(self.device).partition(":")[0] == "cuda"

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
    device: str = option("cpu", DEVICE_HELP)
    threads: int | None = option(None, THREADS_HELP)
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

    @classmethod
    def _common(cls, name: str, value, values: dict) -> dict:
        if name != "device":
            return super()._common(name, value, values)
        kind, index = parse_device(value, cls.runtime)
        provider = values.get("provider", "cpu" if kind == "cpu" else "cuda")
        if (provider == "cpu") != (kind == "cpu"):
            raise ValueError(f"the onnxruntime runtime cannot take device={value!r} with provider={provider!r}")
        if kind == "cuda" and values.get("device_id", index) != index:
            raise ValueError(f"the onnxruntime runtime cannot take device={value!r} with device_id="
                             f"{values['device_id']}")
        return {"provider": provider, **({"device_id": index} if kind == "cuda" else {})}

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

    @classmethod
    def _common(cls, name: str, value, values: dict) -> dict:
        if name == "device" and parse_device(value, cls.runtime)[0] == "cpu":
            return {}  # the CPU plugin is the only one this adapter runs
        if name == "device":
            raise ValueError(f"the openvino runtime cannot take device={value!r}: it runs on the CPU only")
        return super()._common(name, value, values)

    @property
    def precision(self) -> str | None:
        return "bf16" if self.inference_precision == "bf16" else None


@dataclass(frozen=True)
class TensorRTOptions(RuntimeOptions):
    runtime: ClassVar[str] = "tensorrt"
    device_id: int = option(0, "onnxruntime, tensorrt: CUDA device index")
    buffers: str = option("auto", "tensorrt: device buffers from torch or pycuda (auto: torch if already imported)",
                          choices=("auto", "torch", "pycuda"))

    cannot: ClassVar[dict[str, str]] = {"threads": "it computes on the GPU (its CPU threads are not a setting)"}

    @property
    def device(self) -> str:
        return "cuda"

    @classmethod
    def _common(cls, name: str, value, values: dict) -> dict:
        if name != "device":
            return super()._common(name, value, values)
        kind, index = parse_device(value, cls.runtime)
        if kind != "cuda":
            raise ValueError(f"the tensorrt runtime cannot take device={value!r}: it runs on a CUDA device only")
        if values.get("device_id", index) != index:
            raise ValueError(f"the tensorrt runtime cannot take device={value!r} with device_id={values['device_id']}")
        return {"device_id": index}


@dataclass(frozen=True)
class AOTInductorOptions(RuntimeOptions):
    runtime: ClassVar[str] = "aoti"
    device: str = option("cpu", DEVICE_HELP)
    threads: int | None = option(None, THREADS_HELP)


@dataclass(frozen=True)
class TritonOptions(RuntimeOptions):
    """A model served by Triton Inference Server (triton://HOST:PORT/MODEL or triton+grpc://...)."""

    runtime: ClassVar[str] = "triton"
    cannot: ClassVar[dict[str, str]] = {
        "threads": "a served model computes with the server's threads (python -m export.triton --threads)",
        "device": "a served model runs where the server's configuration puts it (python -m export.triton)",
    }
    server_timeout: int = option(60, "triton: seconds to wait for the server's answer to one request")
    shared_memory: str = option("none", "triton: pass tensors through shared memory, with a server on this host "
                                "(system) or on this client's GPU (cuda)", choices=("none", "system", "cuda"))

    @property
    def device(self) -> str:
        return "cuda" if self.shared_memory == "cuda" else "cpu"


def options_class(runtime: str) -> type[RuntimeOptions]:
    """The options dataclass of the adapter named `runtime`, as the format table names it."""
    return formats.by_runtime(runtime).options_class()


def all_options() -> list[type[RuntimeOptions]]:
    return [f.options_class() for f in formats.formats()]


# ---------------------------------------------------------------- command-line flags


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per option field of every adapter (a field shared by adapters is one flag)."""
    group = parser.add_argument_group("runtime options (each applies to the runtimes its help names)")
    add_option_flags(group, all_options())


def given_flags(args: argparse.Namespace) -> set[str]:
    """The option fields given on the command line (flags default to absent)."""
    return given_options(all_options(), args)
