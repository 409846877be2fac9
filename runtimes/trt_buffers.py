"""Device memory, pinned host memory and a CUDA stream for runtimes.trt, from pycuda or from torch.

Both kinds keep, per tensor name, one device buffer and one page-locked host buffer that grow to the
largest size seen: a new shape allocates only when it needs more room, so allocation stays out of
the timed copies and a steady shape allocates once. Copies and `execute_async_v3` run on a dedicated
stream, not on the legacy default stream (handle 0), on which TensorRT would add device
synchronisations. `current()` makes the device current in the *calling* thread (pycuda: push the
primary context; torch: select the device), so a runtime activated in one thread can be used from
another, and device N is used when device N was asked for.
"""

from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass

import numpy as np


def _pycuda_driver():
    import pycuda.driver

    return pycuda.driver


def _torch():
    import torch

    return torch


@dataclass
class _Slot:
    device: object  # the device allocation
    host: np.ndarray  # page-locked uint8 host memory of the same size
    nbytes: int


class DeviceBuffers(abc.ABC):
    """The interface runtimes.trt uses; subclasses supply allocation, copies and the stream."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}
        self.allocations = 0  # device allocations made so far (tests check it stays flat)

    @property
    @abc.abstractmethod
    def stream_handle(self) -> int: ...

    @abc.abstractmethod
    def current(self) -> contextlib.AbstractContextManager:
        """Make this device current in the calling thread for the duration of the `with` block."""

    def prepare(self, name: str, shape: tuple, dtype) -> int:
        """The device address of `name`'s buffer, (re)allocated when `shape` needs more room than it has."""
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        slot = self._slots.get(name)
        if slot is None or slot.nbytes < nbytes:
            if slot is not None:
                self._free(slot)
            device, host = self._allocate(nbytes)
            slot = self._slots[name] = _Slot(device, host, nbytes)
            self.allocations += 1
        return self._address(slot.device)

    def upload(self, name: str, array: np.ndarray) -> None:
        """Stage `array` in `name`'s pinned host buffer and copy it to the device on the stream."""
        host = self._slots[name].host[:array.nbytes]
        host[:] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        self._copy_to_device(self._slots[name], host)

    def download(self, name: str, shape: tuple, dtype) -> np.ndarray:
        """Copy `name` back through its pinned buffer, wait for the stream, return an owned array."""
        dtype = np.dtype(dtype)
        host = self._slots[name].host[:int(np.prod(shape)) * dtype.itemsize]
        self._copy_to_host(self._slots[name], host)
        self.synchronize()
        return host.view(dtype).reshape(shape).copy()

    def close(self) -> None:
        with self.current():
            self.synchronize()
            for slot in self._slots.values():
                self._free(slot)
        self._slots.clear()

    @abc.abstractmethod
    def synchronize(self) -> None: ...

    @abc.abstractmethod
    def _allocate(self, nbytes: int) -> tuple[object, np.ndarray]: ...

    @abc.abstractmethod
    def _address(self, device) -> int: ...

    @abc.abstractmethod
    def _copy_to_device(self, slot: _Slot, host: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _copy_to_host(self, slot: _Slot, host: np.ndarray) -> None: ...

    def _free(self, slot: _Slot) -> None:
        pass


class PycudaBuffers(DeviceBuffers):
    """pycuda memory in the device's primary context (the context CUDA runtime users such as torch share)."""

    def __init__(self, device_id: int = 0) -> None:
        super().__init__()
        self.cuda = _pycuda_driver()
        self.cuda.init()
        self.context = self.cuda.Device(device_id).retain_primary_context()
        with self.current():
            self.stream = self.cuda.Stream()

    @property
    def stream_handle(self) -> int:
        return self.stream.handle

    @contextlib.contextmanager
    def current(self):
        self.context.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def close(self) -> None:
        """Free the buffers, then release the retained primary context (pycuda's `detach`, which calls
        cuDevicePrimaryCtxRelease). It is pushed first: pycuda releases a context that is current in the
        calling thread, or one retained by that thread, and from any other thread would only mark it invalid."""
        super().close()
        if self.context is not None:
            self.context.push()
            self.context.detach()  # takes it off this thread's stack too
            self.context = None

    def synchronize(self) -> None:
        self.stream.synchronize()

    def _allocate(self, nbytes: int):
        return self.cuda.mem_alloc(nbytes), self.cuda.pagelocked_empty(nbytes, np.uint8)

    def _address(self, device) -> int:
        return int(device)

    def _copy_to_device(self, slot: _Slot, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(slot.device, host, self.stream)

    def _copy_to_host(self, slot: _Slot, host: np.ndarray) -> None:
        self.cuda.memcpy_dtoh_async(host, slot.device, self.stream)

    def _free(self, slot: _Slot) -> None:
        slot.device.free()


class TorchBuffers(DeviceBuffers):
    """torch memory on cuda:`device_id` (for processes that already use torch: one CUDA context)."""

    def __init__(self, device_id: int = 0) -> None:
        super().__init__()
        self.torch = _torch()
        self.device = self.torch.device("cuda", device_id)
        self.stream = self.torch.cuda.Stream(device=self.device)

    @property
    def stream_handle(self) -> int:
        return self.stream.cuda_stream

    def current(self):
        return self.torch.cuda.device(self.device)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def _allocate(self, nbytes: int):
        device = self.torch.empty(nbytes, dtype=self.torch.uint8, device=self.device)
        host = self.torch.empty(nbytes, dtype=self.torch.uint8, pin_memory=True)
        return (device, host), host.numpy()

    def _address(self, device) -> int:
        return device[0].data_ptr()

    def _copy_to_device(self, slot: _Slot, host: np.ndarray) -> None:
        device, pinned = slot.device
        with self.torch.cuda.stream(self.stream):
            device[:host.nbytes].copy_(pinned[:host.nbytes], non_blocking=True)

    def _copy_to_host(self, slot: _Slot, host: np.ndarray) -> None:
        device, pinned = slot.device
        with self.torch.cuda.stream(self.stream):
            pinned[:host.nbytes].copy_(device[:host.nbytes], non_blocking=True)
