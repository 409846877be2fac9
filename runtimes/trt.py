"""TensorRT runtime: a serialized engine, dynamic shapes, `set_tensor_address` + `execute_async_v3`.

The engine's build environment (`model.engine.json`, written by `python -m export.tensorrt`) is
checked before deserializing: engines are tied to the TensorRT version and the GPU. Device
buffers (runtimes.trt_buffers) come from torch when torch is already imported in this process,
otherwise from pycuda, so serving needs no torch. Either way they live on `device_id`, run on a
dedicated stream, are allocated once per input shape, and every call makes the device current in
the calling thread.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from sunet_deploy import formats
from sunet_deploy.engine_env import check_engine_environment, read_engine_sidecar

from .base import Runtime, RuntimeUnavailable, TensorInfo, Timing
from .options import TensorRTOptions
from .trt_buffers import DeviceBuffers, PycudaBuffers, TorchBuffers


def _tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise RuntimeUnavailable(f"TensorRT is not installed: {formats.get('tensorrt').install}") from exc
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


class TensorRTRuntime(Runtime):
    name = "tensorrt"

    def __init__(self, path: str | Path, options: TensorRTOptions | None = None) -> None:
        super().__init__(path, options or TensorRTOptions())
        self.sidecar = read_engine_sidecar(self.path)
        self.info = self.sidecar.artifact
        self.engine = self.context = self.buffers = None

    @classmethod
    def availability(cls, options: TensorRTOptions) -> str | None:
        return availability()

    def _activate(self) -> None:
        trt = _tensorrt()
        check_engine_environment(self.path, trt.__version__, device_id=self.options.device_id)
        self.buffers = self._make_buffers()
        try:
            with self.buffers.current():
                self._load_engine(trt)
        except BaseException:
            self._deactivate()
            raise

    def _load_engine(self, trt) -> None:
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{self.path}: TensorRT could not deserialize the engine (see the log above)")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(f"{self.path}: TensorRT could not create an execution context (out of GPU memory? "
                               "see the log above)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}

    def _make_buffers(self) -> DeviceBuffers:
        kind, device_id = self.options.buffers, self.options.device_id
        use_torch = kind == "torch" or (kind == "auto" and ("torch" in sys.modules or _pycuda_missing()))
        return TorchBuffers(device_id) if use_torch else PycudaBuffers(device_id)

    def _deactivate(self) -> None:
        if self.buffers is not None:
            with self.buffers.current():  # TensorRT frees device memory: the right context must be current
                self.context = self.engine = None
            self.buffers.close()
        self.context = self.engine = self.buffers = None

    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo(t["name"], tuple(t["shape"]), t["dtype"]) for t in self.sidecar.inputs]

    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo(t["name"], tuple(t["shape"]), t["dtype"]) for t in self.sidecar.outputs]

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, Timing]:
        with self.buffers.current():
            return self._run(batch)

    def _bind(self, name: str, address: int) -> None:
        if not self.context.set_tensor_address(name, address):
            raise RuntimeError(f"TensorRT refused the device address of {name!r} (see the log above)")

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, Timing]:
        name, buffers, context = self.input_names[0], self.buffers, self.context
        check_shape_in_profile(name, batch.shape, self.engine.get_tensor_profile_shape(name, 0))
        if not context.set_input_shape(name, batch.shape):
            raise RuntimeError(f"TensorRT refused input shape {batch.shape} for {name!r}")
        batch = batch.astype(self.dtypes[name], copy=False)
        self._bind(name, buffers.prepare(name, batch.shape, batch.dtype))
        shapes = {out: tuple(context.get_tensor_shape(out)) for out in self.output_names}
        for out, shape in shapes.items():
            self._bind(out, buffers.prepare(out, shape, self.dtypes[out]))
        t0 = time.perf_counter()
        buffers.upload(name, batch)
        buffers.synchronize()
        t1 = time.perf_counter()
        if not context.execute_async_v3(buffers.stream_handle):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the log above)")
        buffers.synchronize()
        t2 = time.perf_counter()
        first = self.output_names[0]
        result = buffers.download(first, shapes[first], self.dtypes[first])
        t3 = time.perf_counter()
        return result, Timing(0.0, (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000)
