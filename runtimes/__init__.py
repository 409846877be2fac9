"""Runtime adapters behind one contract (`runtimes.base.Runtime`).

`open_runtime(path)` picks the adapter from the artifact's suffix; `runtime=` overrides it.
Adapters are imported lazily, so serving an ONNX model or an engine never imports PyTorch.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .base import ArtifactError, Runtime, RuntimeUnavailable, TensorInfo, Timing

# name -> (module, class); the module also defines availability(**options) -> reason or None.
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
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        known = ", ".join(f"{s} ({n})" for s, n in SUFFIXES.items())
        raise ArtifactError(path, f"unknown model file type {suffix or '(no suffix)'!r}; known: {known}")
    return SUFFIXES[suffix]


def _module(runtime: str):
    if runtime not in ADAPTERS:
        raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(ADAPTERS)}")
    return importlib.import_module(ADAPTERS[runtime][0])


def availability(runtime: str, **options) -> str | None:
    """None when `runtime` can run here with these options, else the reason it cannot."""
    try:
        module = _module(runtime)
    except ImportError as exc:
        return f"{runtime} runtime cannot be imported: {exc}"
    return module.availability(**options)


def open_runtime(path: str | Path, runtime: str | None = None, **options) -> Runtime:
    """Open a model artifact with the adapter for its type (or the one named by `runtime`)."""
    runtime = runtime or runtime_for(path)
    if not Path(path).is_file():
        raise ArtifactError(path, "no such file")
    if Path(path).suffix.lower() in SUFFIXES and SUFFIXES[Path(path).suffix.lower()] != runtime:
        expected = SUFFIXES[Path(path).suffix.lower()]
        raise ArtifactError(path, f"is a {expected} artifact, not one the {runtime} runtime opens")
    cls = getattr(_module(runtime), ADAPTERS[runtime][1])
    return cls(path, **options)


__all__ = [
    "ADAPTERS",
    "ArtifactError",
    "Runtime",
    "RuntimeUnavailable",
    "TensorInfo",
    "Timing",
    "availability",
    "open_runtime",
    "runtime_for",
]
