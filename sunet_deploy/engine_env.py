"""The build environment of a TensorRT engine, stored next to it as `model.engine.json`.

Engines are tied to the TensorRT version and the GPU they were built with. `python -m
export.tensorrt` writes this sidecar; a runtime reads it before deserializing the engine and
refuses a mismatch with a message that says what to rebuild. Torch-free: the GPU (CUDA device N,
CUDA's numbering) is queried with pycuda, else torch if already imported, else nvidia-smi where its PCI
numbering matches CUDA's, or passed in by the caller.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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


def read_matching_sidecar(engine_path: str | os.PathLike) -> EngineSidecar:
    """The engine's sidecar, after checking that it describes this very engine file (its SHA-256)."""
    sidecar = read_engine_sidecar(engine_path)
    if file_sha256(engine_path) != sidecar.engine_sha256:
        raise EngineEnvironmentError(f"{engine_path}: the engine does not match its {sidecar_path(engine_path).name} "
                                     "(rebuilt or replaced without it); " + REBUILD_HINT.format(engine=engine_path))
    return sidecar


def check_engine_environment(engine_path: str | os.PathLike, trt_version: str, device_id: int = 0,
                             gpu: GpuInfo | None = None) -> EngineSidecar:
    """The engine's sidecar, after checking that this TensorRT and GPU are the ones it was built for.

    `gpu` is this machine's GPU; it is queried (query_gpu) when not given.
    """
    sidecar = read_matching_sidecar(engine_path)
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
    """Name and compute capability of CUDA device `device_id` (CUDA's numbering, the one TensorRT and torch
    use), without importing PyTorch: pycuda, else torch if this process already has it, else nvidia-smi
    where its numbering provably matches CUDA's (gpu_from_nvidia_smi)."""
    try:
        import pycuda.driver as cuda
    except ImportError:
        if sys.modules.get("torch") is not None:
            return _gpu_from_torch(sys.modules["torch"], device_id)
        return gpu_from_nvidia_smi(device_id)
    try:
        cuda.init()
        device = cuda.Device(device_id)
        major, minor = device.compute_capability()
        return GpuInfo(device.name(), f"{major}.{minor}")
    except cuda.Error as exc:
        raise EngineEnvironmentError(f"no CUDA device {device_id} ({exc})") from exc


def _gpu_from_torch(torch, device_id: int) -> GpuInfo:
    if not 0 <= device_id < torch.cuda.device_count():
        raise EngineEnvironmentError(f"no CUDA device {device_id} (torch sees {torch.cuda.device_count()})")
    props = torch.cuda.get_device_properties(device_id)
    return GpuInfo(props.name, f"{props.major}.{props.minor}")


def gpu_from_nvidia_smi(device_id: int = 0) -> GpuInfo:
    """CUDA device `device_id` as nvidia-smi names it. nvidia-smi numbers GPUs in PCI bus order, CUDA
    fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, and CUDA_VISIBLE_DEVICES renumbers them in the
    order it lists them; so the answer is given only where it cannot be another GPU's: all visible GPUs
    alike, PCI_BUS_ID order, or CUDA_VISIBLE_DEVICES given as GPU UUIDs."""
    if shutil.which("nvidia-smi") is None:
        raise EngineEnvironmentError("no CUDA device visible: neither pycuda nor nvidia-smi is available")
    result = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid,name,compute_cap", "--format=csv,noheader"],
                            capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        answer = result.stdout.strip() or result.stderr.strip()
        raise EngineEnvironmentError(f"no CUDA device {device_id}: nvidia-smi says {answer}")
    gpus = [[field.strip() for field in line.split(",")] for line in result.stdout.strip().splitlines()]
    if not gpus or any(len(gpu) != 4 for gpu in gpus):
        raise EngineEnvironmentError(f"cannot read nvidia-smi's answer {result.stdout.strip()!r}")
    selectors = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = [v.strip() for v in (selectors or "").split(",") if v.strip()] if selectors is not None else \
        [index for index, *_ in gpus]
    if device_id >= len(visible):
        raise EngineEnvironmentError(f"no CUDA device {device_id}: CUDA_VISIBLE_DEVICES={selectors!r}")
    if len({(name, capability) for _, _, name, capability in gpus}) == 1:  # whichever it is, it is this one
        return GpuInfo(gpus[0][2], gpus[0][3])
    selector = visible[device_id]
    if not selector.startswith("GPU-") and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        raise EngineEnvironmentError(
            f"cannot tell which GPU is CUDA device {device_id}: nvidia-smi numbers GPUs in PCI bus order, CUDA "
            "fastest first; set CUDA_DEVICE_ORDER=PCI_BUS_ID (or install pycuda)")
    match = next((gpu for gpu in gpus if selector == gpu[0] or gpu[1].startswith(selector)), None)
    if match is None:
        raise EngineEnvironmentError(f"no CUDA device {device_id}: nvidia-smi lists no GPU {selector!r}")
    return GpuInfo(match[2], match[3])
