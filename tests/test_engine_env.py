"""sunet_deploy.engine_env: the engine sidecar, GPU queries without torch, clear refusals."""

import subprocess
import sys
import types
from pathlib import Path

import pytest

from factory import make_meta
from sunet_deploy import engine_env
from sunet_deploy.engine_env import (EngineEnvironmentError, EngineSidecar, GpuInfo, check_engine_environment,
                                     read_engine_sidecar, write_engine_sidecar)
from sunet_deploy.artifact import ArtifactInfo
from sunet_deploy.fileio import file_sha256
from sunet_deploy.models import ModelSpec

GPU = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")


@pytest.fixture
def engine(tmp_path):
    path = tmp_path / "model.engine"
    path.write_bytes(b"serialized engine")
    profile = ((1, 3, 64, 64), (1, 3, 512, 512), (4, 3, 1024, 1024))
    artifact = ArtifactInfo(make_meta(ModelSpec("sunet_tiny", num_classes=3)), "tensorrt", "fp16", profile[2], profile)
    sidecar = EngineSidecar(
        artifact=artifact, tensorrt_version="10.9.0", gpu=GPU,
        onnx_sha256="ab" * 32, engine_sha256=file_sha256(path),
        inputs=[{"name": "input", "shape": ["batch", 3, "height", "width"], "dtype": "float32"}],
        outputs=[{"name": "logits", "shape": ["batch", 3, "height", "width"], "dtype": "float32"}],
    )
    write_engine_sidecar(path, sidecar)
    return path, sidecar


def test_sidecar_round_trip(engine):
    path, sidecar = engine
    assert Path(f"{path}.json").is_file()
    assert read_engine_sidecar(path) == sidecar
    assert check_engine_environment(path, "10.9.0", gpu=GPU) == sidecar


def test_unreadable_sidecars_are_refused(engine):
    path, _ = engine
    sidecar_file = Path(f"{path}.json")
    sidecar_file.write_text('{"format": "something else"}')
    with pytest.raises(EngineEnvironmentError, match="unreadable engine build environment"):
        read_engine_sidecar(path)
    sidecar_file.write_text("{truncated")
    with pytest.raises(EngineEnvironmentError, match="unreadable engine build environment"):
        read_engine_sidecar(path)
    sidecar_file.unlink()
    with pytest.raises(EngineEnvironmentError, match="no build environment file model.engine.json"):
        read_engine_sidecar(path)


def test_gpu_from_pycuda(monkeypatch):
    device = types.SimpleNamespace(name=lambda: GPU.name, compute_capability=lambda: (9, 0))
    driver = types.SimpleNamespace(init=lambda: None, Device=lambda i: device, Error=RuntimeError)
    monkeypatch.setitem(sys.modules, "pycuda", types.SimpleNamespace(driver=driver))
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    assert engine_env.query_gpu(0) == GPU


H100 = "0, GPU-1111aaaa-0000-0000-0000-000000000000, NVIDIA H100 80GB HBM3, 9.0"
A10 = "1, GPU-2222bbbb-0000-0000-0000-000000000000, NVIDIA A10, 8.6"


def nvidia_smi(monkeypatch, *lines):
    """No pycuda, no torch in the process: query_gpu asks nvidia-smi, which answers `lines` (PCI bus order)."""
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setattr(engine_env.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(engine_env.subprocess, "run", lambda command, **kwargs: subprocess.CompletedProcess(
        command, 0, stdout="\n".join(lines) + "\n", stderr=""))
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        monkeypatch.delenv(name, raising=False)


def test_gpu_from_nvidia_smi_where_its_numbering_cannot_mislead(monkeypatch):
    nvidia_smi(monkeypatch, H100, H100.replace("0, GPU-1111", "1, GPU-3333"))
    assert engine_env.query_gpu(1) == GPU  # two alike: CUDA device 1 is an H100 whatever the order
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with pytest.raises(EngineEnvironmentError, match="no CUDA device 1: CUDA_VISIBLE_DEVICES='1'"):
        engine_env.query_gpu(1)
    monkeypatch.setattr(engine_env.shutil, "which", lambda name: None)
    with pytest.raises(EngineEnvironmentError, match="no CUDA device visible"):
        engine_env.query_gpu(0)


def test_mixed_gpus_need_pci_bus_order_or_uuids(monkeypatch):
    """nvidia-smi numbers GPUs in PCI bus order, CUDA fastest first: on a machine with an A10 at PCI index 1
    and an H100 at 0, CUDA device 0 is the H100 only under CUDA_DEVICE_ORDER=PCI_BUS_ID."""
    nvidia_smi(monkeypatch, H100, A10)
    with pytest.raises(EngineEnvironmentError, match="cannot tell which GPU is CUDA device 0: .*CUDA_DEVICE_ORDER=PCI_BUS_ID"):
        engine_env.query_gpu(0)
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    assert engine_env.query_gpu(0) == GPU and engine_env.query_gpu(1) == GpuInfo("NVIDIA A10", "8.6")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    assert engine_env.query_gpu(0) == GpuInfo("NVIDIA A10", "8.6")
    monkeypatch.delenv("CUDA_DEVICE_ORDER")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-2222bbbb,GPU-1111aaaa")  # CUDA numbers them in this order
    assert engine_env.query_gpu(0) == GpuInfo("NVIDIA A10", "8.6") and engine_env.query_gpu(1) == GPU


def test_gpu_from_torch_when_torch_is_loaded_and_pycuda_is_not(monkeypatch):
    props = types.SimpleNamespace(name=GPU.name, major=9, minor=0)
    cuda = types.SimpleNamespace(device_count=lambda: 2, get_device_properties=lambda i: props)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    assert engine_env.query_gpu(1) == GPU
    with pytest.raises(EngineEnvironmentError, match=r"no CUDA device 2 \(torch sees 2\)"):
        engine_env.query_gpu(2)


def test_tensorrt_runtime_reads_the_sidecar_without_tensorrt(engine):
    from runtimes.trt import TensorRTRuntime

    path, sidecar = engine
    runtime = TensorRTRuntime(path)
    assert runtime.info == sidecar.artifact and runtime.info.fixed_size is None
    assert runtime.inputs()[0].shape == ("batch", 3, "height", "width") and runtime.outputs()[0].name == "logits"


def test_engine_env_imports_without_torch():
    code = "import sys; sys.modules['torch'] = None; import sunet_deploy.engine_env, export.tensorrt; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).parent.parent)
    assert result.stdout.strip() == "ok", result.stderr
