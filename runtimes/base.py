"""The contract every runtime adapter follows (in the manner of Polygraphy's runners).

    with open_runtime("model.onnx") as rt:
        logits = rt.infer(batch)           # float32 NCHW, normalised as rt.metadata says
        print(rt.info.precision, rt.last_timing.total_ms)

Constructing an adapter reads the artifact's `ArtifactInfo` (cheap, and fails early on a wrong
file); `activate()` (or entering the context) allocates the engine, `deactivate()` frees it.
Torch-free.
"""

from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from sunet_deploy.artifact import ArtifactError, ArtifactInfo, labels_dtype
from sunet_deploy.metadata import ModelMetadata

from .options import RuntimeOptions


class RuntimeUnavailable(RuntimeError):
    """The runtime cannot run here (library missing, no GPU); the message says what to install."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple  # ints, or strings for dynamic dimensions
    dtype: str


@dataclass
class Timing:
    """Latency of the last `infer` call; the device split is filled in where the runtime measures it."""

    total_ms: float
    h2d_ms: float | None = None
    compute_ms: float | None = None
    d2h_ms: float | None = None


class Runtime(abc.ABC):
    """One engine behind the shared contract: artifact info, inputs/outputs, infer, timing, lifetime.

    Subclasses set `self.info` in their constructor.
    """

    name: ClassVar[str]
    served: ClassVar[bool] = False  # opens a served model's URI, not a file
    takes_images: bool = False  # a served image model: encoded images in, masks out (TritonRuntime.masks), no infer
    info: ArtifactInfo

    def __init__(self, path: str | Path, options: RuntimeOptions) -> None:
        self.path = str(path) if self.served else Path(path)
        if not self.served and not self.path.is_file():  # the one "no such file" check of every adapter
            raise ArtifactError(self.path, "is a folder, not a model file" if self.path.is_dir() else "no such file")
        self.options = options
        self.last_timing: Timing | None = None
        self.active = False

    def __enter__(self) -> "Runtime":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    @classmethod
    def availability(cls, options: RuntimeOptions) -> str | None:
        """None when this adapter can run with `options` here, else the reason it cannot (what to install)."""
        return None

    def activate(self) -> None:
        if not self.active:
            reason = self.availability(self.options)
            if reason:
                raise RuntimeUnavailable(f"the {self.name} runtime cannot run here: {reason}")
            self._activate()
            self.active = True

    def deactivate(self) -> None:
        if self.active:
            self._deactivate()
            self.active = False

    @property
    def metadata(self) -> ModelMetadata:
        return self.info.metadata

    @property
    def output_kind(self) -> str:
        """"logits" (N, C, H, W float32) or "labels" (N, H, W integer class indices)."""
        return self.metadata.output

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run a normalised float32 NCHW batch; returns logits or labels as `output_kind` says."""
        self.check_active()
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected an N x 3 x H x W batch, got shape {batch.shape}")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        start = time.perf_counter()
        out, timing = self._infer(batch)
        timing.total_ms = (time.perf_counter() - start) * 1000
        self.last_timing = timing
        return out

    def check_active(self) -> None:
        if not self.active:
            raise RuntimeError(f"{self.name} runtime is not active: use `with` or call activate() first")

    def warmup(self, shape: tuple[int, int, int, int] = (1, 3, 512, 512), iterations: int = 3) -> None:
        batch = np.zeros(shape, dtype=np.float32)
        for _ in range(iterations):
            self.infer(batch)

    @abc.abstractmethod
    def inputs(self) -> list[TensorInfo]: ...

    @abc.abstractmethod
    def outputs(self) -> list[TensorInfo]: ...

    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _deactivate(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, Timing]:
        """Run the batch; return the output on the host and a Timing (total_ms is set by `infer`)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def image_input_info(name: str = "input") -> TensorInfo:
    return TensorInfo(name, ("batch", 3, "height", "width"), "float32")


def output_info(kind: str, num_classes: int) -> TensorInfo:
    if kind == "labels":
        return TensorInfo("labels", ("batch", "height", "width"), labels_dtype(num_classes))
    return TensorInfo("logits", ("batch", num_classes, "height", "width"), "float32")


def torch_device_availability(device: str) -> str | None:
    """Whether torch (imported by the caller's module) sees `device`."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        return "no CUDA device visible to PyTorch (or a CPU-only build of torch)"
    return None


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` inside the block and restored after (torch's setting is
    process-wide; the pytorch and aoti runtimes' `threads` is theirs only while they compute)."""
    import torch

    before = torch.get_num_threads()
    if threads and threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads and threads != before:
            torch.set_num_threads(before)
