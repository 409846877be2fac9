"""Timing and memory of one runtime, trtexec style: warm-up by time, then at least a duration and a count.

Timed iterations can come in several chunks (`Samples.extend`), so that a benchmark can interleave
runtimes round by round: on a shared machine, load that comes and goes then hits every row alike.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from runtimes import Runtime
from runtimes.stats import latency_summary

SPLIT = ("h2d_ms", "compute_ms", "d2h_ms")


@dataclass
class Samples:
    """Raw per-iteration latencies (ms), the device split where the runtime reports it, and wall time."""

    total_ms: list[float] = field(default_factory=list)
    split_ms: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in SPLIT})
    wall_s: float = 0.0
    images: int = 0

    def throughput(self) -> float:
        """Images per second of wall time over all timed iterations."""
        return self.images / self.wall_s if self.wall_s > 0 else math.nan

    def summary(self) -> dict:
        out = {"latency_ms": latency_summary(self.total_ms), "throughput_ips": self.throughput()}
        for key, values in self.split_ms.items():
            if values:
                out[key.removesuffix("_ms")] = latency_summary(values)
        return out


def warm_up(runtime: Runtime, batch: np.ndarray, seconds: float) -> int:
    """Run until `seconds` have passed (at least once); returns the number of iterations."""
    start, count = time.perf_counter(), 0
    while count == 0 or time.perf_counter() - start < seconds:
        runtime.infer(batch)
        count += 1
    return count


def time_iterations(runtime: Runtime, batch: np.ndarray, samples: Samples, min_seconds: float, min_count: int) -> None:
    """Time iterations until both `min_seconds` have passed and `min_count` were run; append to `samples`."""
    start, count = time.perf_counter(), 0
    while count < min_count or time.perf_counter() - start < min_seconds:
        runtime.infer(batch)
        timing = runtime.last_timing
        samples.total_ms.append(timing.total_ms)
        for key in SPLIT:
            value = getattr(timing, key)
            if value is not None:
                samples.split_ms[key].append(value)
        count += 1
    samples.wall_s += time.perf_counter() - start
    samples.images += count * batch.shape[0]


def host_memory() -> dict:
    """Resident set size now (where psutil is installed) and the process's peak so far (MiB)."""
    peak = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB on Linux
    try:
        import psutil  # absent on some GPU images; the peak does without it
    except ImportError:
        return peak
    return {"rss_mib": psutil.Process().memory_info().rss / 2**20, **peak}


class DeviceMemory:
    """Peak GPU memory of what runs between `start()` and `stop()`: torch's allocator counters and the
    driver's free-memory delta (which also sees ONNX Runtime's and TensorRT's own allocations)."""

    def __init__(self, device: str) -> None:
        self.torch = sys.modules.get("torch") if device.startswith("cuda") else None
        self.active = self.torch is not None and self.torch.cuda.is_available()

    def start(self) -> None:
        if not self.active:
            return
        cuda = self.torch.cuda
        cuda.synchronize()
        cuda.empty_cache()  # cached blocks freed by earlier rows would hide this row from the driver delta
        self.allocated0 = cuda.memory_allocated()
        self.free0 = cuda.mem_get_info()[0]
        cuda.reset_peak_memory_stats()

    def stop(self, runtime: Runtime) -> dict:
        if not self.active:
            return {}
        cuda = self.torch.cuda
        cuda.synchronize()
        out = {
            "torch_peak_allocated_mib": (cuda.max_memory_allocated() - self.allocated0) / 2**20,
            "driver_used_delta_mib": (self.free0 - cuda.mem_get_info()[0]) / 2**20,
        }
        engine = getattr(runtime, "engine", None)
        if engine is not None and hasattr(engine, "device_memory_size_v2"):
            out["tensorrt_activation_mib"] = engine.device_memory_size_v2 / 2**20
        return out
