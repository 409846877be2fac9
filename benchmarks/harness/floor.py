"""The compute floor a latency is read against: the model's FLOPs over the matrix-multiply rate this
machine reaches, measured in the same run.

A convolution network spends its time in convolutions that oneDNN, MLAS and cuDNN compute like
matrix products, so FLOPs / (the best matrix-multiply rate) is a latency no runtime can beat at
that precision, and latency / floor says how far a row is from it. Rates are timed with torch:

- CPU: float32 `torch.mm` of 2048x2048 matrices at the benchmark's thread count (sgemm);
- CUDA: `torch.mm` of 8192x8192 matrices in FP32 (TF32 off) and FP16, and the memory bandwidth
  of a device-to-device copy of 1 GiB (read + write).

Each rate is the best of several timed repetitions: the floor is what the hardware can do, not
what a loaded moment let it do.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

CPU_SIZE = 2048
CUDA_SIZE = 8192
COPY_BYTES = 1 << 30


def best_seconds(step: Callable[[], None], min_seconds: float = 0.5, min_count: int = 3,
                 sync: Callable[[], None] = lambda: None) -> float:
    """The shortest time of one `step` over at least `min_count` runs and `min_seconds` (after one warm-up)."""
    step()
    sync()
    best, start, count = float("inf"), time.perf_counter(), 0
    while count < min_count or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        step()
        sync()
        best = min(best, time.perf_counter() - t0)
        count += 1
    return best


def matmul_gflops(device: str = "cpu", dtype: torch.dtype = torch.float32, size: int | None = None,
                  min_seconds: float = 0.5) -> float:
    """GFLOP/s of `torch.mm` of two size x size matrices (2 size^3 FLOPs), best repetition."""
    size = size or (CPU_SIZE if device == "cpu" else CUDA_SIZE)
    generator = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(size, size, device=device, dtype=dtype, generator=generator) for _ in range(2))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    seconds = best_seconds(lambda: torch.mm(a, b), min_seconds, sync=sync)
    return 2 * size**3 / seconds / 1e9


def cuda_copy_gbs(nbytes: int = COPY_BYTES, min_seconds: float = 0.5) -> float:
    """Device memory bandwidth in GB/s: bytes read plus bytes written by a device-to-device copy."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    seconds = best_seconds(lambda: dst.copy_(src), min_seconds, sync=torch.cuda.synchronize)
    return 2 * nbytes / seconds / 1e9


def measure_rates(device: str = "cpu", threads: int | None = None) -> dict[str, float]:
    """The rates of `device`: {"fp32_gflops"} on CPU (at `threads`), plus {"fp16_gflops",
    "bandwidth_gbs"} on CUDA (FP32 with TF32 off)."""
    if device == "cpu":
        if threads:
            torch.set_num_threads(threads)
        return {"fp32_gflops": matmul_gflops("cpu")}
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        fp32 = matmul_gflops(device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return {"fp32_gflops": fp32, "fp16_gflops": matmul_gflops(device, torch.float16), "bandwidth_gbs": cuda_copy_gbs()}


def floor_ms(gflops_model: float, rates: dict[str, float], precision: str = "fp32") -> float:
    """Milliseconds the model's FLOPs take at the matrix rate of `precision` (FP32's where none was
    measured: on CPU every row, INT8 and BF16 too, is read against the sgemm floor)."""
    rate = rates.get(f"{precision}_gflops", rates["fp32_gflops"])
    return 1000 * gflops_model / rate


def merge_best(samples: list[dict[str, float]]) -> dict[str, float]:
    """The best of each rate over several measurements (e.g. one per benchmark round)."""
    return {key: max(s[key] for s in samples) for key in samples[0]}
