"""A fake `pycuda.driver` whose "device" memory is host memory, recording every call.

Copies the behaviour of pycuda (inducer/pycuda at 19bed903, src/wrapper/wrap_cudadrv.cpp and
doc/driver.rst) and of the CUDA driver underneath it:
- `Device(n).retain_primary_context()` returns a Context; `Context.push()` makes it current in the
  *calling thread only* and the static `Context.pop()` pops the calling thread's current context:
  CUDA contexts are current per thread, so memory, stream and copy calls in a thread with no current
  context fail (pycuda raises LogicError "... invalid device context");
- `mem_alloc(bytes)` returns a DeviceAllocation (`int()` is its address, `free()` frees it);
- `pagelocked_empty(shape, dtype)` returns page-locked host memory;
- `memcpy_htod_async(dest, src, stream)` / `memcpy_dtoh_async(dest, src, stream)` copy the size of
  the host buffer; the host buffer "must be page-locked memory" (doc/driver.rst), otherwise CUDA
  stages the copy and it is synchronous: recorded here as `pageable`;
- `Stream()` has `handle` (never 0, the legacy default stream) and `synchronize()`;
- `retain_primary_context()` retains the device's primary context (cuDevicePrimaryCtxRetain) and
  `Context.detach()` releases it (src/cpp/cuda.hpp: `primary_context::detach_internal` calls
  cuDevicePrimaryCtxRelease) where pycuda can: when the context is current in the calling thread (it is
  then taken off the thread's stack), or the calling thread is the one that retained it; from any other
  thread the context is marked invalid and nothing is released ("leaked out-of-thread context"). A
  second detach raises LogicError "cannot detach from invalid context"; `retained` counts the retains
  not released, per device.

`calls` lists (operation, thread name, detail) so tests can see what ran where.
"""

from __future__ import annotations

import ctypes
import itertools
import threading

import numpy as np


class Error(Exception):
    pass


class LogicError(Error):
    pass


class FakeDriver:
    """One fake driver (a module-like object); `devices` is the number of visible GPUs."""

    Error = Error
    LogicError = LogicError

    def __init__(self, devices: int = 2, names=("NVIDIA Test GPU", "NVIDIA Test GPU")) -> None:
        self.devices, self.names = devices, names
        self.calls: list[tuple[str, str, object]] = []
        self._local = threading.local()
        self._pinned: list[np.ndarray] = []
        self._handles = itertools.count(0x7F00)
        self.live_allocations = 0
        self.retained: dict[int, int] = {}
        driver = self

        class Context:
            def __init__(self, device_id: int) -> None:
                self.device_id = device_id
                self.thread = threading.get_ident()
                self.valid = True
                driver.retained[device_id] = driver.retained.get(device_id, 0) + 1

            def push(self) -> None:
                if not self.valid:
                    raise LogicError("cuCtxPushCurrent failed: invalid device context")
                driver._stack().append(self)
                driver._record("push", self.device_id)

            def detach(self) -> None:
                if not self.valid:
                    raise LogicError("context::detach failed: invalid device context - cannot detach from invalid context")
                stack = driver._stack()
                current = bool(stack) and stack[-1] is self
                if current:
                    stack.pop()  # pycuda's current_context(except=this) drops it from the thread's stack
                if current or self.thread == threading.get_ident():
                    driver.retained[self.device_id] -= 1
                    driver._record("release", self.device_id)
                else:
                    driver._record("leaked", self.device_id)
                self.valid = False

            @staticmethod
            def pop() -> None:
                stack = driver._stack()
                if not stack:
                    raise LogicError("cuCtxPopCurrent failed: invalid device context")
                driver._record("pop", stack.pop().device_id)

            @staticmethod
            def get_current():
                stack = driver._stack()
                return stack[-1] if stack else None

        class Device:
            def __init__(self, number: int) -> None:
                if not 0 <= number < driver.devices:
                    raise LogicError(f"cuDeviceGet failed: invalid device ordinal {number}")
                self.number = number

            @staticmethod
            def count() -> int:
                return driver.devices

            def name(self) -> str:
                return driver.names[self.number]

            def compute_capability(self) -> tuple[int, int]:
                return (9, 0)

            def retain_primary_context(self):
                return Context(self.number)

        class Stream:
            def __init__(self, flags: int = 0) -> None:
                driver._require_context("cuStreamCreate")
                self.handle = next(driver._handles)
                driver._record("stream", self.handle)

            def synchronize(self) -> None:
                driver._require_context("cuStreamSynchronize")
                driver._record("synchronize", self.handle)

        class DeviceAllocation:
            def __init__(self, nbytes: int) -> None:
                self._memory = (ctypes.c_byte * nbytes)()
                driver.live_allocations += 1

            def __int__(self) -> int:
                return ctypes.addressof(self._memory)

            def free(self) -> None:
                driver._require_context("cuMemFree")
                driver.live_allocations -= 1
                self._memory = None

        self.Context, self.Device, self.Stream, self.DeviceAllocation = Context, Device, Stream, DeviceAllocation

    def _stack(self) -> list:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def _record(self, operation: str, detail) -> None:
        self.calls.append((operation, threading.current_thread().name, detail))

    def _require_context(self, what: str) -> int:
        stack = self._stack()
        if not stack:
            raise LogicError(f"{what} failed: invalid device context")
        return stack[-1].device_id

    def _is_pinned(self, array: np.ndarray) -> bool:
        address = array.__array_interface__["data"][0]
        return any(p.ctypes.data <= address < p.ctypes.data + max(p.nbytes, 1) for p in self._pinned)

    def init(self) -> None:
        pass

    def mem_alloc(self, nbytes: int):
        device = self._require_context("cuMemAlloc")
        self._record("mem_alloc", (device, nbytes))
        return self.DeviceAllocation(nbytes)

    def pagelocked_empty(self, shape, dtype, order="C", mem_flags=0) -> np.ndarray:
        self._require_context("cuMemHostAlloc")
        array = np.empty(shape, dtype, order=order)
        self._pinned.append(array)
        self._record("pagelocked_empty", array.nbytes)
        return array

    def memcpy_htod_async(self, dest, src, stream=None) -> None:
        self._require_context("cuMemcpyHtoDAsync")
        src = np.ascontiguousarray(src)
        self._record("htod", {"stream": getattr(stream, "handle", 0), "pageable": not self._is_pinned(src),
                              "nbytes": src.nbytes})
        ctypes.memmove(int(dest), src.ctypes.data, src.nbytes)

    def memcpy_dtoh_async(self, dest, src, stream=None) -> None:
        self._require_context("cuMemcpyDtoHAsync")
        self._record("dtoh", {"stream": getattr(stream, "handle", 0), "pageable": not self._is_pinned(dest),
                              "nbytes": dest.nbytes})
        ctypes.memmove(dest.ctypes.data, int(src), dest.nbytes)

    def require_context(self, stream_handle) -> None:
        """For the fake TensorRT's execute_async_v3: TensorRT needs the engine's context current too."""
        self._require_context("enqueueV3")

    def operations(self, name: str) -> list:
        return [call for call in self.calls if call[0] == name]
