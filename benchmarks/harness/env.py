"""The environment block printed with every number: CPU, threads, load, GPU, driver, library versions."""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone


def _version(module: str) -> str | None:
    try:
        return getattr(importlib.import_module(module), "__version__", "unknown")
    except ImportError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None


def _gpu() -> dict:
    """GPU name, CUDA and driver versions as torch and nvidia-smi see them (empty without a GPU). The GPU is
    CUDA device 0 as torch numbers it (CUDA's order, fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID),
    the device the benchmarks run on; nvidia-smi, which numbers GPUs in PCI bus order, gives only the
    driver version, the same for every GPU."""
    if "torch" not in sys.modules and _version("torch") is None:
        return {}
    import torch

    if not torch.cuda.is_available():
        return {"cuda_build": torch.version.cuda}
    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": props.name,
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "driver": _nvidia_driver(),
        **{name.lower(): os.environ[name] for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER") if name in os.environ},
    }


def environment(threads: int | None = None) -> dict:
    """Everything a reader needs to judge the numbers, as a JSON-ready dict."""
    torch_threads = None
    if _version("torch") is not None:
        import torch

        torch_threads = torch.get_num_threads()
    return {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "torch_threads": torch_threads,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
        "onnx": _version("onnx"),
        "tensorrt": _version("tensorrt"),
        "openvino": _version("openvino"),
        **_gpu(),
    }


def format_environment(env: dict) -> str:
    """The environment as Markdown bullet lines; libraries that are not installed are left out."""
    return "\n".join(f"- {key}: {value}" for key, value in env.items() if value is not None)
