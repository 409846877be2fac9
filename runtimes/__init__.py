"""Runtime adapters behind one contract (`runtimes.base.Runtime`).

`open_runtime(path)` picks the adapter from the artifact's suffix; its options are that adapter's
dataclass in `runtimes.options` (or the same fields as keyword arguments). Adapters are imported
lazily, so serving an ONNX model or an engine never imports PyTorch.
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
}
SUFFIXES = {
    ".safetensors": "pytorch",
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".pt2": "aoti",
}


def runtime_for(path: str | Path) -> str:
    """The adapter that opens `path`, by its file type."""
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
    if not Path(path).is_file():
        raise ArtifactError(path, "no such file")
    module, cls = ADAPTERS[runtime]
    return getattr(importlib.import_module(module), cls)(path, options)


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
