"""A CPU stand-in for the part of torch that runtimes.trt_buffers.TorchBuffers uses on a GPU.

`FakeTorch` is the real (CPU) torch module, except that `torch.cuda` is a recording fake and
`torch.empty` places "cuda" tensors on the CPU and records pinning requests (a CPU-only torch refuses
`pin_memory=True`). What it copies from torch (2.x, torch/cuda/__init__.py and streams.py):
- `torch.cuda.current_stream()` is the legacy default stream, whose `cuda_stream` handle is 0;
- `torch.cuda.Stream(device=...)` is a new stream with a non-zero handle and `synchronize()`;
- `torch.cuda.stream(s)` and `torch.cuda.device(d)` are context managers that set the *calling
  thread's* current stream and device (CUDA's current device is per thread, so a thread that never
  selected device N runs on device 0).
`events` lists (event, thread name, detail).
"""

from __future__ import annotations

import contextlib
import itertools
import threading

import torch


class FakeStream:
    def __init__(self, handle: int, device) -> None:
        self.cuda_stream, self.device = handle, device

    def synchronize(self) -> None:
        pass


class FakeTorchCuda:
    def __init__(self, devices: int = 2) -> None:
        self.devices = devices
        self.events: list[tuple[str, str, object]] = []
        self._local = threading.local()
        self._handles = itertools.count(0x5100)

    def _record(self, event, detail) -> None:
        self.events.append((event, threading.current_thread().name, detail))

    def is_available(self) -> bool:
        return self.devices > 0

    def device_count(self) -> int:
        return self.devices

    def current_device(self) -> int:
        return getattr(self._local, "device", 0)

    def current_stream(self, device=None) -> FakeStream:
        return getattr(self._local, "stream", None) or FakeStream(0, self.current_device())

    def Stream(self, device=None, priority=0) -> FakeStream:  # noqa: N802 - torch's name
        index = torch.device(device).index if device is not None else self.current_device()
        stream = FakeStream(next(self._handles), index)
        self._record("stream", (stream.cuda_stream, index))
        return stream

    @contextlib.contextmanager
    def stream(self, stream: FakeStream):
        previous = getattr(self._local, "stream", None)
        self._local.stream = stream
        self._record("enter_stream", stream.cuda_stream)
        try:
            yield
        finally:
            self._local.stream = previous

    @contextlib.contextmanager
    def device(self, device):
        index = torch.device(device).index if not isinstance(device, int) else device
        previous = self.current_device()
        self._local.device = index
        self._record("enter_device", index)
        try:
            yield
        finally:
            self._local.device = previous


class FakeTorch:
    """torch with a fake `cuda` and a recording, CPU-placing `empty`."""

    def __init__(self, devices: int = 2) -> None:
        self.cuda = FakeTorchCuda(devices)
        self.allocations: list[dict] = []

    def __getattr__(self, name):
        return getattr(torch, name)

    def empty(self, *size, dtype=None, device=None, pin_memory=False):
        device = torch.device(device) if device is not None else torch.device("cpu")
        self.allocations.append({"device": str(device), "pinned": pin_memory, "numel": int(torch.Size(size).numel()),
                                 "thread": threading.current_thread().name})
        return torch.empty(*size, dtype=dtype, device="cpu")
