"""runtimes.trt around TensorRT: environment checks, profile checks, shape setting and address binding,
and both buffer classes (pycuda, torch) with their stream, pinning, allocation and thread behaviour.

Runs against fakes (tests/fakes): a fake `tensorrt` 10.x whose engine computes on host memory, a fake
`pycuda.driver` whose device memory is host memory and whose contexts are current per thread like
CUDA's, and a CPU stand-in for torch.cuda. The real engine runs in tests/test_tensorrt_export.py where
TensorRT and a GPU exist."""

import sys
import threading

import numpy as np
import pytest

from fakes import tensorrt10
from fakes.pycuda_driver import FakeDriver
from fakes.tensorrt_base import engine_bytes, fake_logits
from fakes.torch_cuda import FakeTorch
from runtimes import ArtifactError, open_runtime, trt_buffers
from runtimes import trt as trt_runtime
from runtimes.options import OnnxRuntimeOptions, TensorRTOptions
from sunet_deploy import engine_env
from sunet_deploy.artifact import ArtifactInfo
from sunet_deploy.engine_env import EngineEnvironmentError, EngineSidecar, GpuInfo, write_engine_sidecar
from sunet_deploy.fileio import file_sha256
from sunet_deploy.metadata import ModelMetadata

GPU = GpuInfo("NVIDIA Test GPU", "9.0")
NUM_CLASSES = 4
PROFILE = ((1, 3, 16, 16), (1, 3, 32, 32), (2, 3, 64, 64))


def write_engine(path, tensorrt_version="10.9.0", gpu=GPU, data=None, labels=None):
    """A fake engine and its sidecar: logits, or with `labels` ("UINT8", "INT64") an --argmax engine's labels."""
    if data is None:
        io = None if labels is None else [{"name": "input", "mode": "INPUT", "dtype": "FLOAT", "rank": 4},
                                          {"name": "labels", "mode": "OUTPUT", "dtype": labels, "rank": 3}]
        data = engine_bytes(io, profile=PROFILE)
    path.write_bytes(data)
    meta = ModelMetadata(model={"arch": "sunet_tiny", "num_classes": NUM_CLASSES},
                         classes=[f"c{i}" for i in range(NUM_CLASSES)], palette=[[i, i, i] for i in range(NUM_CLASSES)],
                         output="logits" if labels is None else "labels")
    tensor = {"name": "input", "shape": ["batch", 3, "height", "width"], "dtype": "float32"}
    artifact = ArtifactInfo(meta, "tensorrt", "fp16", PROFILE[2], PROFILE)
    output = {"name": "logits", "shape": ["batch", NUM_CLASSES, "height", "width"], "dtype": "float32"}
    if labels:
        output = {"name": "labels", "shape": ["batch", "height", "width"], "dtype": labels.lower()}
    sidecar = EngineSidecar(artifact, tensorrt_version, gpu, "0" * 64, file_sha256(path), [tensor], [output])
    write_engine_sidecar(path, sidecar)
    return path


class FakeGpu:
    """The fakes one test uses: `trt`, and `driver` (pycuda) or `torch`, whichever `buffers` names."""

    def __init__(self, monkeypatch, buffers: str) -> None:
        self.buffers = buffers
        self.trt = tensorrt10.make()
        self.driver = self.torch = None
        monkeypatch.setitem(sys.modules, "tensorrt", self.trt)
        monkeypatch.setattr(engine_env, "query_gpu", lambda device_id=0: GPU)
        monkeypatch.setattr(trt_runtime, "_cuda_device_count", lambda: 2)
        if buffers == "pycuda":
            self.driver = FakeDriver()
            monkeypatch.setattr(trt_buffers, "_pycuda_driver", lambda: self.driver)
            self.trt.scenario.on_execute = self.driver.require_context  # TensorRT needs a current context
        else:
            self.torch = FakeTorch()
            monkeypatch.setattr(trt_buffers, "_torch", lambda: self.torch)

    def open(self, path, device_id=0):
        return open_runtime(path, TensorRTOptions(device_id=device_id, buffers=self.buffers))


@pytest.fixture(params=["pycuda", "torch"])
def gpu(request, monkeypatch):
    return FakeGpu(monkeypatch, request.param)


def batch(shape=(2, 3, 20, 36), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_engine_runs_through_the_contract(tmp_path, gpu):
    runtime = gpu.open(write_engine(tmp_path / "model.engine"))
    assert runtime.metadata.num_classes == NUM_CLASSES
    assert [t.name for t in runtime.inputs()] == ["input"] and runtime.outputs()[0].shape[1] == NUM_CLASSES
    x = batch()
    with runtime:
        out = runtime.infer(x)
    np.testing.assert_allclose(out, fake_logits(x, NUM_CLASSES), rtol=1e-6)
    timing = runtime.last_timing
    assert timing.total_ms > 0 and None not in (timing.h2d_ms, timing.compute_ms, timing.d2h_ms)
    if gpu.driver:
        assert gpu.driver.live_allocations == 0, "deactivate frees the device buffers"
        assert gpu.driver.retained == {0: 0} and gpu.driver._stack() == [], "and releases the primary context"


@pytest.mark.parametrize("labels", ["UINT8", "INT64"])  # an --argmax engine now, and one built before
def test_labels_engine_returns_its_own_type(tmp_path, monkeypatch, labels):
    gpu = FakeGpu(monkeypatch, "pycuda")
    x = batch()
    with gpu.open(write_engine(tmp_path / "model.engine", labels=labels)) as runtime:
        out = runtime.infer(x)
        assert runtime.outputs()[0].dtype == labels.lower()
    assert out.dtype == np.dtype(labels.lower())
    np.testing.assert_array_equal(out, fake_logits(x, NUM_CLASSES).argmax(axis=1))


def test_primary_context_is_released_from_the_thread_that_closes(tmp_path, monkeypatch):
    """pycuda releases a retained context only where it is current or was retained: a runtime activated in
    one thread and closed in another must still release it."""
    gpu = FakeGpu(monkeypatch, "pycuda")
    runtime = gpu.open(write_engine(tmp_path / "model.engine"), device_id=1)
    runtime.activate()
    runtime.infer(batch())
    worker = threading.Thread(target=runtime.deactivate)
    worker.start()
    worker.join()
    assert gpu.driver.retained == {1: 0} and not gpu.driver.operations("leaked")
    assert [call[0] for call in gpu.driver.calls[-2:]] == ["push", "release"]


def test_buffers_are_allocated_once_per_shape(tmp_path, gpu):
    with gpu.open(write_engine(tmp_path / "model.engine")) as runtime:
        for _ in range(3):
            runtime.infer(batch((1, 3, 32, 32)))
        assert runtime.buffers.allocations == 2, "one input and one output buffer for a steady shape"
        smaller = batch((1, 3, 16, 24))
        np.testing.assert_allclose(runtime.infer(smaller), fake_logits(smaller, NUM_CLASSES), rtol=1e-6)
        assert runtime.buffers.allocations == 2, "a smaller shape fits the buffers it has"
        larger = batch((2, 3, 48, 64))
        np.testing.assert_allclose(runtime.infer(larger), fake_logits(larger, NUM_CLASSES), rtol=1e-6)
        assert runtime.buffers.allocations == 4, "a larger shape reallocates both"
    pinned = gpu.driver.operations("pagelocked_empty") if gpu.driver else \
        [a for a in gpu.torch.allocations if a["pinned"]]
    assert len(pinned) == 4, "pinned host buffers follow the device buffers, not the calls"


def test_execution_runs_on_a_dedicated_stream_with_pinned_copies(tmp_path, gpu):
    with gpu.open(write_engine(tmp_path / "model.engine")) as runtime:
        runtime.infer(batch())
        runtime.infer(batch())
        handle = runtime.buffers.stream_handle
    assert handle != 0, "0 is the legacy default stream"
    assert gpu.trt.scenario.executed_streams == [handle, handle]
    if gpu.driver:
        copies = gpu.driver.operations("htod") + gpu.driver.operations("dtoh")
        assert len(copies) == 4 and all(c[2]["stream"] == handle and not c[2]["pageable"] for c in copies)
    else:
        assert {e[2] for e in gpu.torch.cuda.events if e[0] == "enter_stream"} == {handle}
        host = [a for a in gpu.torch.allocations if a["device"] == "cpu"]
        assert host and all(a["pinned"] for a in host)


def test_a_runtime_activated_in_one_thread_runs_in_another(tmp_path, gpu):
    runtime = gpu.open(write_engine(tmp_path / "model.engine"), device_id=1)
    runtime.activate()
    x, results = batch(), {}

    def serve():
        results["out"] = runtime.infer(x)

    worker = threading.Thread(target=serve, name="worker")
    worker.start()
    worker.join()
    runtime.deactivate()
    np.testing.assert_allclose(results["out"], fake_logits(x, NUM_CLASSES), rtol=1e-6)
    if gpu.driver:
        assert ("push", "worker", 1) in gpu.driver.calls, "the calling thread makes the context current"
        assert all(call[1] == "worker" for call in gpu.driver.calls if call[0] in ("htod", "dtoh"))
    else:
        assert ("enter_device", "worker", 1) in gpu.torch.cuda.events, "the calling thread selects device 1"


def test_device_id_reaches_the_buffers(tmp_path, gpu):
    with gpu.open(write_engine(tmp_path / "model.engine"), device_id=1) as runtime:
        runtime.infer(batch())
    if gpu.driver:
        assert {call[2] for call in gpu.driver.calls if call[0] == "push"} == {1}
        assert {call[2][0] for call in gpu.driver.operations("mem_alloc")} == {1}
    else:
        assert {a["device"] for a in gpu.torch.allocations if a["device"] != "cpu"} == {"cuda:1"}
        assert [e[2][1] for e in gpu.torch.cuda.events if e[0] == "stream"] == [1]


@pytest.mark.parametrize("shape", [(1, 3, 8, 32), (3, 3, 32, 32), (1, 3, 32, 65)])
def test_shape_outside_profile_is_refused(tmp_path, monkeypatch, shape):
    gpu = FakeGpu(monkeypatch, "pycuda")
    with gpu.open(write_engine(tmp_path / "model.engine")) as runtime:
        with pytest.raises(ValueError, match=r"outside the engine's profile: min \(1, 3, 16, 16\), max \(2, 3, 64, 64\)"):
            runtime.infer(np.zeros(shape, np.float32))


def test_shape_tensorrt_refuses_is_reported(tmp_path, monkeypatch):
    gpu = FakeGpu(monkeypatch, "pycuda")
    path = write_engine(tmp_path / "model.engine")
    with gpu.open(path) as runtime:
        monkeypatch.setattr(type(runtime.context), "set_input_shape", lambda self, name, shape: False)
        with pytest.raises(RuntimeError, match="TensorRT refused input shape"):
            runtime.infer(batch())


@pytest.mark.parametrize("built_with, message", [
    ({"tensorrt_version": "10.3.0"}, "built for TensorRT 10.3.0, this machine has TensorRT 10.9.0"),
    ({"gpu": GpuInfo("NVIDIA A100", "8.0")}, r"built for GPU NVIDIA A100 \(compute capability 8.0\)"),
])
def test_engine_from_another_environment_is_refused(tmp_path, monkeypatch, built_with, message):
    gpu = FakeGpu(monkeypatch, "pycuda")
    runtime = gpu.open(write_engine(tmp_path / "model.engine", **built_with))
    with pytest.raises(EngineEnvironmentError, match=message):
        runtime.activate()
    assert not runtime.active


def test_engine_replaced_without_its_sidecar_is_refused(tmp_path, monkeypatch):
    gpu = FakeGpu(monkeypatch, "pycuda")
    path = write_engine(tmp_path / "model.engine")
    path.write_bytes(b"another engine")
    with pytest.raises(EngineEnvironmentError, match="does not match its model.engine.json"):
        gpu.open(path).activate()


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


@pytest.mark.parametrize("failure, message", [
    ({"data": b"garbage"}, "could not deserialize the engine"),
    ("context_fails", "could not create an execution context"),
])
def test_engine_tensorrt_cannot_load_is_refused(tmp_path, monkeypatch, failure, message):
    gpu = FakeGpu(monkeypatch, "pycuda")
    if failure == "context_fails":
        gpu.trt.scenario.context_fails = True  # create_execution_context returns None: out of device memory
        path = write_engine(tmp_path / "model.engine")
    else:
        path = write_engine(tmp_path / "model.engine", **failure)
    runtime = gpu.open(path)
    with pytest.raises(RuntimeError, match=message):
        runtime.activate()
    assert not runtime.active and runtime.buffers is None and runtime.engine is None
    assert gpu.driver.live_allocations == 0 and gpu.driver._stack() == [], "nothing left allocated or pushed"


@pytest.mark.parametrize("size", [(100, 300), (10, 12), (40, 50)])
def test_predict_letterboxes_images_the_profile_excludes(tmp_path, monkeypatch, size):
    from runtimes.predict import Predictor

    gpu = FakeGpu(monkeypatch, "pycuda")
    image = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    with gpu.open(write_engine(tmp_path / "model.engine")) as runtime:
        predictor = Predictor(runtime)
        mask = predictor.mask(image)
        seen = tuple(runtime.context.get_tensor_shape("input"))  # what the engine ran on: inside its profile
    assert mask.shape == size
    assert all(16 <= d <= 64 for d in seen[2:])
    assert predictor.letterboxed == (size != (40, 50))
