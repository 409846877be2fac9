"""TensorRT runtime: a serialized engine, dynamic shapes, `set_tensor_address` + `execute_async_v3`.

The engine's build environment (`model.engine.json`, written by `python -m export.tensorrt`) is
checked before deserializing: engines are tied to the TensorRT version and the GPU. Device
buffers come from torch on its current stream when torch is already imported in this process
(pycuda's own context would clash with it), otherwise from pycuda, so serving needs no torch.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from sunet_deploy.engine_env import check_engine_environment, read_engine_sidecar

from .base import Runtime, RuntimeUnavailable, TensorInfo, Timing
from .options import TensorRTOptions


def _tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise RuntimeUnavailable(
            "TensorRT is not installed: pip install 'sunet-deploy[gpu]' (tensorrt, pycuda) on a machine with an NVIDIA GPU"
        ) from exc
    return tensorrt


def availability() -> str | None:
    try:
        _tensorrt()
    except RuntimeUnavailable as exc:
        return str(exc)
    return None if _cuda_device_count() > 0 else "no CUDA device visible"


def _pycuda_missing() -> bool:
    try:
        import pycuda.driver  # noqa: F401
    except ImportError:
        return True
    return False


def _cuda_device_count() -> int:
    if not _pycuda_missing():
        import pycuda.driver as cuda

        try:
            cuda.init()
            return cuda.Device.count()
        except cuda.Error:
            return 0
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count()


def check_shape_in_profile(name: str, shape: tuple, profile: tuple) -> None:
    """Refuse a shape outside the engine's optimization profile (min, opt, max) with a clear message."""
    low, _, high = (tuple(p) for p in profile)
    if len(shape) != len(low) or any(s < lo or s > hi for s, lo, hi in zip(shape, low, high)):
        raise ValueError(
            f"input {name!r} of shape {tuple(shape)} is outside the engine's profile: min {low}, max {high}; "
            "rebuild the engine with python -m export.tensorrt --min/--max"
        )


class TorchBuffers:
    """Device memory from torch on torch's current stream (for processes that already use torch)."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.stream = torch.cuda.current_stream()

    @property
    def stream_handle(self) -> int:
        return self.stream.cuda_stream

    def to_device(self, array: np.ndarray):
        return self.torch.from_numpy(array).pin_memory().to("cuda", non_blocking=True)

    def empty(self, shape: tuple, dtype: np.dtype):
        return self.torch.empty(shape, dtype=getattr(self.torch, np.dtype(dtype).name), device="cuda")

    @staticmethod
    def address(buffer) -> int:
        return buffer.data_ptr()

    def to_host(self, buffer) -> np.ndarray:
        return buffer.cpu().numpy()

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        pass


class PycudaBuffers:
    """Device memory from pycuda in the device's primary context (shared with any other CUDA user)."""

    def __init__(self, device_id: int = 0) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self.cuda = cuda
        self.context = cuda.Device(device_id).retain_primary_context()
        self.context.push()
        self.stream = cuda.Stream()

    @property
    def stream_handle(self) -> int:
        return self.stream.handle

    def to_device(self, array: np.ndarray):
        buffer = self.cuda.mem_alloc(array.nbytes)
        self.cuda.memcpy_htod_async(buffer, np.ascontiguousarray(array), self.stream)
        return (buffer, array.shape, array.dtype)

    def empty(self, shape: tuple, dtype: np.dtype):
        return (self.cuda.mem_alloc(int(np.prod(shape)) * np.dtype(dtype).itemsize), shape, np.dtype(dtype))

    @staticmethod
    def address(buffer) -> int:
        return int(buffer[0])

    def to_host(self, buffer) -> np.ndarray:
        device, shape, dtype = buffer
        host = self.cuda.pagelocked_empty(shape, dtype)
        self.cuda.memcpy_dtoh_async(host, device, self.stream)
        self.stream.synchronize()
        return np.array(host)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self.context.pop()


class TensorRTRuntime(Runtime):
    name = "tensorrt"

    def __init__(self, path: str | Path, options: TensorRTOptions | None = None) -> None:
        super().__init__(path, options or TensorRTOptions())
        self.sidecar = read_engine_sidecar(self.path)
        self.info = self.sidecar.artifact
        self.device_id = self.options.device_id
        self.buffer_kind = self.options.buffers
        self.engine = self.context = self.buffers = None

    def _activate(self) -> None:
        trt = _tensorrt()
        check_engine_environment(self.path, trt.__version__, device_id=self.device_id)
        self.buffers = self._make_buffers()
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            self._deactivate()
            raise RuntimeError(f"{self.path}: TensorRT could not deserialize the engine (see the log above)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        self.trt = trt

    def _make_buffers(self):
        use_torch = self.buffer_kind == "torch" or (self.buffer_kind == "auto" and ("torch" in sys.modules or _pycuda_missing()))
        return TorchBuffers() if use_torch else PycudaBuffers(self.device_id)

    def _deactivate(self) -> None:
        self.context = self.engine = None
        self.buffers.close()
        self.buffers = None

    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo(t["name"], tuple(t["shape"]), t["dtype"]) for t in self.sidecar.inputs]

    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo(t["name"], tuple(t["shape"]), t["dtype"]) for t in self.sidecar.outputs]

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, Timing]:
        name = self.input_names[0]
        check_shape_in_profile(name, batch.shape, self.engine.get_tensor_profile_shape(name, 0))
        if not self.context.set_input_shape(name, batch.shape):
            raise RuntimeError(f"TensorRT refused input shape {batch.shape} for {name!r}")
        t0 = time.perf_counter()
        device_input = self.buffers.to_device(batch.astype(self.trt.nptype(self.engine.get_tensor_dtype(name))))
        self.context.set_tensor_address(name, self.buffers.address(device_input))
        outputs = {}
        for out_name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(out_name))
            outputs[out_name] = self.buffers.empty(shape, self.trt.nptype(self.engine.get_tensor_dtype(out_name)))
            self.context.set_tensor_address(out_name, self.buffers.address(outputs[out_name]))
        self.buffers.synchronize()
        t1 = time.perf_counter()
        if not self.context.execute_async_v3(self.buffers.stream_handle):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the log above)")
        self.buffers.synchronize()
        t2 = time.perf_counter()
        result = self.buffers.to_host(outputs[self.output_names[0]])
        t3 = time.perf_counter()
        return result, Timing(0.0, (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000)
