"""Runtime adapters behind one contract (`runtimes.base.Runtime`).

`open_runtime(path)` picks the adapter from the artifact's suffix, or from the scheme of a served
model's URI (`triton://HOST:PORT/MODEL` over HTTP, `triton+grpc://HOST:PORT/MODEL` over gRPC); its
options are that adapter's dataclass in `runtimes.options` (or the same fields as keyword
arguments). Adapters are imported lazily, so serving an ONNX model or an engine never imports PyTorch.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from sunet_deploy.artifact import ArtifactError, ArtifactInfo

from .base import Runtime, RuntimeUnavailable, TensorInfo, Timing
from .options import OPTIONS, RuntimeOptions

# name -> (module, class)
ADAPTERS = {
    "pytorch": ("runtimes.pytorch", "PyTorchRuntime"),
    "onnxruntime": ("runtimes.ort", "OnnxRuntimeRuntime"),
    "tensorrt": ("runtimes.trt", "TensorRTRuntime"),
    "aoti": ("runtimes.aoti", "AOTInductorRuntime"),
    "triton": ("runtimes.triton", "TritonRuntime"),
}
SUFFIXES = {
    ".safetensors": "pytorch",
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".pt2": "aoti",
}
SCHEMES = {"triton": "triton", "triton+grpc": "triton"}


def uri_scheme(path: str | Path) -> str | None:
    """"triton" for "triton://...": the scheme of a served model's URI, None for a file path."""
    scheme, sep, _ = str(path).partition("://")
    return scheme if sep else None


def runtime_for(path: str | Path) -> str:
    """The adapter that opens `path`, by its file type or its URI scheme."""
    scheme = uri_scheme(path)
    if scheme is not None:
        if scheme not in SCHEMES:
            raise ArtifactError(path, f"unknown URI scheme {scheme!r}; known: {', '.join(SCHEMES)}")
        return SCHEMES[scheme]
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        known = ", ".join(f"{s} ({n})" for s, n in SUFFIXES.items())
        raise ArtifactError(path, f"unknown model file type {suffix or '(no suffix)'!r}; known: {known}")
    return SUFFIXES[suffix]


def options_for(path: str | Path, **options) -> RuntimeOptions:
    """The options of the adapter that opens `path`, from keyword arguments (unknown ones are an error)."""
    cls = OPTIONS[runtime_for(path)]
    try:
        return cls(**options)
    except TypeError as exc:
        raise ValueError(f"{cls.runtime} runtime options: {exc}") from exc


def open_runtime(path: str | Path, options: RuntimeOptions | None = None, **kwargs) -> Runtime:
    """Open a model artifact with the adapter for its type, configured by `options` or keyword options."""
    runtime = runtime_for(path)
    options = options if options is not None else options_for(path, **kwargs)
    if options.runtime != runtime:
        raise ArtifactError(path, f"is a {runtime} artifact, not one the {options.runtime} runtime opens")
    if uri_scheme(path) is None and not Path(path).is_file():
        raise ArtifactError(path, "no such file")
    module, cls = ADAPTERS[runtime]
    try:
        adapter = getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:  # its library is not installed (torch: an extra of the core install)
        raise RuntimeUnavailable(options.availability() or f"the {runtime} runtime cannot be imported: {exc}") from exc
    return adapter(path, options)


__all__ = [
    "ADAPTERS",
    "ArtifactError",
    "ArtifactInfo",
    "Runtime",
    "RuntimeOptions",
    "RuntimeUnavailable",
    "TensorInfo",
    "Timing",
    "open_runtime",
    "options_for",
    "runtime_for",
]
