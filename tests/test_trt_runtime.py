"""runtimes.trt around TensorRT: environment checks, profile checks, shape setting and address
binding, run against a fake `tensorrt` module whose engine computes on host memory. The real
engine runs in tests/test_tensorrt_export.py where TensorRT and a GPU exist."""

import ctypes
import sys
import types

import numpy as np
import pytest

from runtimes import ArtifactError, open_runtime
from runtimes.options import OnnxRuntimeOptions
from runtimes import trt as trt_runtime
from sunet_deploy import engine_env
from sunet_deploy.engine_env import EngineEnvironmentError, EngineSidecar, GpuInfo, write_engine_sidecar
from sunet_deploy.artifact import ArtifactInfo
from sunet_deploy.fileio import file_sha256
from sunet_deploy.metadata import ModelMetadata

GPU = GpuInfo("NVIDIA Test GPU", "9.0")
NUM_CLASSES = 4
PROFILE = ((1, 3, 16, 16), (1, 3, 32, 32), (2, 3, 64, 64))


def host_view(address: int, shape: tuple, dtype=np.float32) -> np.ndarray:
    count = int(np.prod(shape))
    return np.ctypeslib.as_array((ctypes.c_float * count).from_address(address)).reshape(shape)


def fake_logits(batch: np.ndarray) -> np.ndarray:
    """What the fake engine computes: class c scores channel c % 3 times (c + 1)."""
    return np.stack([batch[:, c % 3] * (c + 1) for c in range(NUM_CLASSES)], axis=1)


class FakeContext:
    def __init__(self) -> None:
        self.shape = None
        self.addresses = {}

    def set_input_shape(self, name, shape):
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        n, _, h, w = self.shape
        return (n, NUM_CLASSES, h, w)

    def set_tensor_address(self, name, address):
        self.addresses[name] = address

    def execute_async_v3(self, stream):
        batch = host_view(self.addresses["input"], self.shape)
        out = host_view(self.addresses["logits"], self.get_tensor_shape("logits"))
        out[...] = fake_logits(batch)
        return True


class FakeEngine:
    num_io_tensors = 2

    def get_tensor_name(self, index):
        return ("input", "logits")[index]

    def get_tensor_mode(self, name):
        return "in" if name == "input" else "out"

    def get_tensor_profile_shape(self, name, profile_index):
        return PROFILE

    def get_tensor_dtype(self, name):
        return np.float32

    def create_execution_context(self):
        return FakeContext()


def fake_tensorrt(version="10.9.0"):
    runtime = types.SimpleNamespace(deserialize_cuda_engine=lambda data: FakeEngine() if data == b"engine" else None)
    return types.SimpleNamespace(
        __version__=version,
        Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
        Runtime=lambda logger: runtime,
        TensorIOMode=types.SimpleNamespace(INPUT="in", OUTPUT="out"),
        nptype=lambda dtype: dtype,
    )


class HostBuffers:
    """The buffer interface of runtimes.trt (TorchBuffers / PycudaBuffers) on host memory."""

    stream_handle = 0

    def to_device(self, array):
        return np.ascontiguousarray(array).copy()

    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    @staticmethod
    def address(buffer):
        return buffer.ctypes.data

    def to_host(self, buffer):
        return buffer.copy()

    def synchronize(self):
        pass

    def close(self):
        pass


def write_engine(path, tensorrt_version="10.9.0", gpu=GPU, data=b"engine"):
    path.write_bytes(data)
    meta = ModelMetadata(model={"arch": "sunet_tiny", "num_classes": NUM_CLASSES},
                         classes=[f"c{i}" for i in range(NUM_CLASSES)], palette=[[i, i, i] for i in range(NUM_CLASSES)])
    tensor = {"name": "input", "shape": ["batch", 3, "height", "width"], "dtype": "float32"}
    artifact = ArtifactInfo(meta, "tensorrt", "fp16", PROFILE[2], PROFILE)
    sidecar = EngineSidecar(artifact, tensorrt_version, gpu, "0" * 64, file_sha256(path), [tensor],
                            [{"name": "logits", "shape": ["batch", NUM_CLASSES, "height", "width"], "dtype": "float32"}])
    write_engine_sidecar(path, sidecar)
    return path


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt())
    monkeypatch.setattr(engine_env, "query_gpu", lambda device_id=0: GPU)
    monkeypatch.setattr(trt_runtime.TensorRTRuntime, "_make_buffers", lambda self: HostBuffers())
    monkeypatch.setattr(trt_runtime, "_cuda_device_count", lambda: 1)


def test_engine_runs_through_the_contract(tmp_path, fake_gpu):
    runtime = open_runtime(write_engine(tmp_path / "model.engine"))
    assert runtime.metadata.num_classes == NUM_CLASSES
    assert [t.name for t in runtime.inputs()] == ["input"] and runtime.outputs()[0].shape[1] == NUM_CLASSES
    batch = np.random.default_rng(0).standard_normal((2, 3, 20, 36)).astype(np.float32)
    with runtime:
        out = runtime.infer(batch)
    np.testing.assert_allclose(out, fake_logits(batch), rtol=1e-6)
    timing = runtime.last_timing
    assert timing.total_ms > 0 and None not in (timing.h2d_ms, timing.compute_ms, timing.d2h_ms)


@pytest.mark.parametrize("shape", [(1, 3, 8, 32), (3, 3, 32, 32), (1, 3, 32, 65)])
def test_shape_outside_profile_is_refused(tmp_path, fake_gpu, shape):
    with open_runtime(write_engine(tmp_path / "model.engine")) as runtime:
        with pytest.raises(ValueError, match=r"outside the engine's profile: min \(1, 3, 16, 16\), max \(2, 3, 64, 64\)"):
            runtime.infer(np.zeros(shape, np.float32))


@pytest.mark.parametrize("built_with, message", [
    ({"tensorrt_version": "10.3.0"}, "built for TensorRT 10.3.0, this machine has TensorRT 10.9.0"),
    ({"gpu": GpuInfo("NVIDIA A100", "8.0")}, r"built for GPU NVIDIA A100 \(compute capability 8.0\)"),
])
def test_engine_from_another_environment_is_refused(tmp_path, fake_gpu, built_with, message):
    runtime = open_runtime(write_engine(tmp_path / "model.engine", **built_with))
    with pytest.raises(EngineEnvironmentError, match=message):
        runtime.activate()
    assert not runtime.active


def test_engine_replaced_without_its_sidecar_is_refused(tmp_path, fake_gpu):
    path = write_engine(tmp_path / "model.engine")
    path.write_bytes(b"another engine")
    with pytest.raises(EngineEnvironmentError, match="does not match its model.engine.json"):
        open_runtime(path).activate()


def test_engine_without_sidecar_is_refused(tmp_path):
    (tmp_path / "model.engine").write_bytes(b"engine")
    with pytest.raises(EngineEnvironmentError, match="no build environment file model.engine.json"):
        open_runtime(tmp_path / "model.engine")
    with pytest.raises(ArtifactError, match="is a tensorrt artifact"):
        open_runtime(tmp_path / "model.engine", OnnxRuntimeOptions())


def test_without_tensorrt_the_reason_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert "pip install 'sunet-deploy[gpu]'" in trt_runtime.availability()
    runtime = open_runtime(write_engine(tmp_path / "model.engine"))
    with pytest.raises(trt_runtime.RuntimeUnavailable, match="TensorRT is not installed"):
        runtime.activate()


def test_engine_tensorrt_cannot_deserialize_is_refused(tmp_path, fake_gpu):
    runtime = open_runtime(write_engine(tmp_path / "model.engine", data=b"garbage"))
    with pytest.raises(RuntimeError, match="could not deserialize the engine"):
        runtime.activate()
    assert not runtime.active and runtime.buffers is None
