"""The build environment of a TensorRT engine, stored next to it as `model.engine.json`.

Engines are tied to the TensorRT version and the GPU they were built with. `python -m
export.tensorrt` writes this sidecar; a runtime reads it before deserializing the engine and
refuses a mismatch with a message that says what to rebuild. Torch-free: the GPU is queried with
pycuda, else nvidia-smi, or passed in by the caller.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .artifact import ArtifactInfo
from .fileio import atomic_write_bytes, file_sha256

FORMAT = "sunet-deploy-tensorrt-engine-2"
REBUILD_HINT = "rebuild the engine on this machine: python -m export.tensorrt MODEL.onnx -o {engine}"


class EngineEnvironmentError(ValueError):
    """The engine's sidecar is missing or unreadable, or the engine was built for another environment."""


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "major.minor", e.g. "8.6"

    def describe(self) -> str:
        return f"{self.name} (compute capability {self.compute_capability})"


@dataclass
class EngineSidecar:
    """What an engine was built from, with and for.

    `artifact` is the engine's ArtifactInfo (model metadata, precision, optimization profile);
    `inputs`/`outputs` are dicts of name, shape, dtype.
    """

    artifact: ArtifactInfo
    tensorrt_version: str
    gpu: GpuInfo
    onnx_sha256: str
    engine_sha256: str
    inputs: list[dict]
    outputs: list[dict]
    build: dict = field(default_factory=dict)  # builder settings and the measured FP16 share

    def to_json(self) -> str:
        data = {"format": FORMAT, **asdict(self), "artifact": self.artifact.to_dict()}
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "EngineSidecar":
        data = json.loads(text)
        if data.pop("format", None) != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        data["gpu"] = GpuInfo(**data["gpu"])
        data["artifact"] = ArtifactInfo.from_dict(data["artifact"])
        return cls(**data)


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    return Path(f"{engine_path}.json")


def write_engine_sidecar(engine_path: str | os.PathLike, sidecar: EngineSidecar) -> Path:
    return atomic_write_bytes(sidecar_path(engine_path), sidecar.to_json().encode())


def read_engine_sidecar(engine_path: str | os.PathLike) -> EngineSidecar:
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise EngineEnvironmentError(
            f"{engine_path}: no build environment file {path.name} next to it; engines are tied to the TensorRT "
            f"version and GPU, so only engines built by python -m export.tensorrt are loaded")
    try:
        return EngineSidecar.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as exc:
        raise EngineEnvironmentError(f"{path}: unreadable engine build environment ({exc})") from exc


def check_engine_environment(engine_path: str | os.PathLike, trt_version: str, device_id: int = 0,
                             gpu: GpuInfo | None = None) -> EngineSidecar:
    """The engine's sidecar, after checking that this TensorRT and GPU are the ones it was built for.

    `gpu` is this machine's GPU; it is queried (pycuda, else nvidia-smi) when not given.
    """
    sidecar = read_engine_sidecar(engine_path)
    if file_sha256(engine_path) != sidecar.engine_sha256:
        raise EngineEnvironmentError(f"{engine_path}: the engine does not match its {sidecar_path(engine_path).name} "
                                     "(rebuilt or replaced without it); " + REBUILD_HINT.format(engine=engine_path))
    gpu = gpu or query_gpu(device_id)
    problems = []
    if sidecar.tensorrt_version != trt_version:
        problems.append(f"TensorRT {sidecar.tensorrt_version}, this machine has TensorRT {trt_version}")
    if (sidecar.gpu.name, sidecar.gpu.compute_capability) != (gpu.name, gpu.compute_capability):
        problems.append(f"GPU {sidecar.gpu.describe()}, this machine has {gpu.describe()}")
    if problems:
        raise EngineEnvironmentError(f"{engine_path}: built for " + "; for ".join(problems) + ". Engines are not "
                                     "portable: " + REBUILD_HINT.format(engine=engine_path))
    return sidecar


def query_gpu(device_id: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device `device_id`, without PyTorch."""
    try:
        import pycuda.driver as cuda
    except ImportError:
        return gpu_from_nvidia_smi(device_id)
    try:
        cuda.init()
        device = cuda.Device(device_id)
        major, minor = device.compute_capability()
        return GpuInfo(device.name(), f"{major}.{minor}")
    except cuda.Error as exc:
        raise EngineEnvironmentError(f"no CUDA device {device_id} ({exc})") from exc


def gpu_from_nvidia_smi(device_id: int = 0) -> GpuInfo:
    """The GPU as nvidia-smi names it; CUDA_VISIBLE_DEVICES is honoured as CUDA would."""
    if shutil.which("nvidia-smi") is None:
        raise EngineEnvironmentError("no CUDA device visible: neither pycuda nor nvidia-smi is available")
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if "CUDA_VISIBLE_DEVICES" in os.environ and device_id >= len(visible):
        raise EngineEnvironmentError(
            f"no CUDA device {device_id}: CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}")
    selector = visible[device_id] if visible else str(device_id)
    result = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader", "-i", selector],
                            capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        answer = result.stdout.strip() or result.stderr.strip()
        raise EngineEnvironmentError(f"no CUDA device {device_id}: nvidia-smi says {answer}")
    return parse_nvidia_smi(result.stdout)


def parse_nvidia_smi(text: str) -> GpuInfo:
    """'NVIDIA H100 80GB HBM3, 9.0' -> GpuInfo."""
    name, _, capability = text.strip().splitlines()[0].rpartition(",")
    if not name or not capability.strip():
        raise EngineEnvironmentError(f"cannot read nvidia-smi's answer {text.strip()!r}")
    return GpuInfo(name.strip(), capability.strip())
