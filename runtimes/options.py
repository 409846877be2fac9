"""Every adapter's options, declared once (torch-free).

Each adapter has one frozen dataclass here. Its fields are the adapter's keyword options, and from
them come the `runtimes.predict` flags (`add_flags` / `from_args`), the benchmark rows and the test
matrix. `availability()` says whether the options can run on this machine. Adding an option is
adding a field with `option(...)`; nothing else needs to know about it.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar


def option(default, help: str, *, choices: tuple | None = None, parse=None):
    """A dataclass field that is also a command-line flag (`--field-name`)."""
    factory = {"default_factory": lambda: type(default)(default)} if isinstance(default, dict) else {"default": default}
    return field(**factory, metadata={"help": help, "choices": choices, "parse": parse})


def key_value(text: str) -> tuple[str, str]:
    """'KEY=VALUE' -> (KEY, VALUE), an argparse type for repeatable dict options."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


@dataclass(frozen=True)
class RuntimeOptions:
    """Base of the per-adapter options; `runtime` names the adapter in runtimes.ADAPTERS."""

    runtime: ClassVar[str]

    def availability(self) -> str | None:
        """None when the runtime can run here with these options, else the reason it cannot."""
        return None

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
        defaults = type(self)()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(defaults, f.name)}


def _torch_device_availability(device: str) -> str | None:
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed: pip install 'sunet-deploy[torch]'"
    if device.startswith("cuda") and not torch.cuda.is_available():
        return "no CUDA device visible to PyTorch (or a CPU-only build of torch)"
    return None


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

    def availability(self) -> str | None:
        if self.cuda_graph and not self.device.startswith("cuda"):
            return "CUDA graphs need --device cuda"
        if self.cuda_graph and self.compile:
            return "choose CUDA graphs or torch.compile (its reduce-overhead/max-autotune modes use CUDA graphs)"
        return _torch_device_availability(self.device)


@dataclass(frozen=True)
class OnnxRuntimeOptions(RuntimeOptions):
    runtime: ClassVar[str] = "onnxruntime"
    provider: str = option("cpu", "onnxruntime: execution provider", choices=("cpu", "cuda", "tensorrt"))
    provider_options: dict = option({}, "onnxruntime: an execution-provider option, e.g. trt_fp16_enable=1 "
                                    "(repeatable)", parse=key_value)
    threads: int | None = option(None, "onnxruntime: intra-op threads (default: all cores)")
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

    def availability(self) -> str | None:
        from runtimes.ort import provider_availability

        return provider_availability(self.provider)

    def session_options(self, ort):
        """onnxruntime.SessionOptions for these options (`ort` is the onnxruntime module)."""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            options.intra_op_num_threads = self.threads
        return options

    def providers(self) -> list:
        """The execution providers with their options, CPU as the fallback of a GPU provider."""
        from runtimes.ort import PROVIDERS

        if self.provider == "cpu":
            return [(PROVIDERS["cpu"], dict(self.provider_options))]
        return [(PROVIDERS[self.provider], {"device_id": self.device_id, **self.provider_options}),
                PROVIDERS["cpu"]]


@dataclass(frozen=True)
class TensorRTOptions(RuntimeOptions):
    runtime: ClassVar[str] = "tensorrt"
    device_id: int = option(0, "onnxruntime, tensorrt: CUDA device index")
    buffers: str = option("auto", "tensorrt: device buffers from torch or pycuda (auto: torch if already imported)",
                          choices=("auto", "torch", "pycuda"))

    @property
    def device(self) -> str:
        return "cuda"

    def availability(self) -> str | None:
        from runtimes.trt import availability

        return availability()


@dataclass(frozen=True)
class AOTInductorOptions(RuntimeOptions):
    runtime: ClassVar[str] = "aoti"
    device: str = option("cpu", "pytorch, aoti: cpu or cuda (cuda:N for another GPU)")

    def availability(self) -> str | None:
        return _torch_device_availability(self.device)


@dataclass(frozen=True)
class TritonOptions(RuntimeOptions):
    """A model served by Triton Inference Server (triton://HOST:PORT/MODEL or triton+grpc://...)."""

    runtime: ClassVar[str] = "triton"
    server_timeout: int = option(60, "triton: seconds to wait for the server's answer to one request")

    def availability(self) -> str | None:
        from runtimes.triton import availability

        return availability()


OPTIONS: dict[str, type[RuntimeOptions]] = {
    cls.runtime: cls
    for cls in (PyTorchOptions, OnnxRuntimeOptions, TensorRTOptions, AOTInductorOptions, TritonOptions)
}


# ---------------------------------------------------------------- command-line flags


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per option field of every adapter (a field shared by adapters is one flag)."""
    group = parser.add_argument_group("runtime options (each applies to the runtimes its help names)")
    seen: set[str] = set()
    for cls in OPTIONS.values():
        for f in dataclasses.fields(cls):
            if f.name in seen:
                continue
            seen.add(f.name)
            group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=argparse.SUPPRESS,
                               **_flag_kwargs(f))  # fmt: skip


def _flag_kwargs(f: dataclasses.Field) -> dict:
    meta, default = f.metadata, f.default if f.default is not dataclasses.MISSING else f.default_factory()
    shown = "" if "default" in meta["help"] or isinstance(default, (bool, dict)) else f" (default: {default})"
    kwargs = {"help": meta["help"] + shown}
    if meta["choices"]:
        kwargs["choices"] = meta["choices"]
    if isinstance(default, dict):
        return {**kwargs, "action": "append", "type": meta["parse"], "metavar": "KEY=VALUE"}
    if f.type == "bool":
        return {**kwargs, "action": "store_true"}
    if f.type == "bool | None":
        return {**kwargs, "action": argparse.BooleanOptionalAction}
    if f.type in ("int", "int | None"):
        return {**kwargs, "type": int}
    return kwargs


def from_args(cls: type[RuntimeOptions], args: argparse.Namespace) -> RuntimeOptions:
    """The options of one adapter from parsed flags; flags of other adapters are ignored."""
    values = {}
    for f in dataclasses.fields(cls):
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            values[f.name] = dict(value) if isinstance(value, list) else value
    return cls(**values)


def given_flags(args: argparse.Namespace) -> set[str]:
    """The option fields given on the command line (flags default to absent)."""
    names = {f.name for cls in OPTIONS.values() for f in dataclasses.fields(cls)}
    return {name for name in names if hasattr(args, name)}
