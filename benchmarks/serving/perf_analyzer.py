"""NVIDIA's perf_analyzer on a served model: the load generator of record beside benchmarks.serving.serve's client.

The binary comes from the serving environment (runtimes.serve.perf_analyzer: tritonclient 2.41.0's
perf_analyzer, installed by make serve-venv). One call measures one concurrency level in
perf_analyzer's own closed loop (synchronous requests, one per client), over the same protocol,
image size and transport as our client, and returns its throughput, latency percentiles and its
split of the average latency (client send and receive, network, server queue and compute).

Measurement: `windows` time windows of `window_s` each after perf_analyzer's own warm-up; its
stability check is relaxed (a shared CPU's latency varies more than its default 10 %), so the
numbers are those of the windows measured, as for our client.
"""

from __future__ import annotations

import base64
import csv
import json
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from runtimes import RuntimeUnavailable
from runtimes.serve import perf_analyzer
from runtimes.triton import ServedModel

US_COLUMNS = {  # perf_analyzer's CSV column -> our key; microseconds
    "Client Send": "client_send", "Network+Server Send/Recv": "network", "Server Queue": "server_queue",
    "Server Compute Input": "server_compute_input", "Server Compute Infer": "server_compute_infer",
    "Server Compute Output": "server_compute_output", "Client Recv": "client_recv",
    "p50 latency": "p50", "p90 latency": "p90", "p95 latency": "p95", "p99 latency": "p99",
}  # fmt: skip


WINDOWS = 3
METHOD = f"{WINDOWS} time windows of the timed seconds / {WINDOWS} after its own warm-up, stability check relaxed"


def status() -> dict:
    """{"status": "run", "version": ...} when perf_analyzer is installed in the serving environment, else
    {"status": why not}."""
    try:
        binary, env = perf_analyzer()
    except RuntimeUnavailable as exc:
        return {"status": str(exc)}
    version = subprocess.run([str(binary), "--version"], env=env, capture_output=True, text=True)
    text = (version.stdout + version.stderr).strip()
    return {"status": "run", "version": text.removeprefix("Perf Analyzer Version ")}


def input_args(model: dict, data: np.ndarray | bytes, folder: Path) -> list[str]:
    """perf_analyzer's input flags: the tensor's shape (random data of it), or the encoded image as JSON input data."""
    if isinstance(data, bytes):
        path = folder / "image.json"
        serialized = struct.pack("<I", len(data)) + data  # a BYTES tensor as Triton's wire format: length, bytes
        path.write_text(json.dumps({"data": [{model["input"]: {"b64": base64.b64encode(serialized).decode()}}]}))
        return ["--input-data", str(path)]
    return ["--shape", f"{model['input']}:{','.join(map(str, data.shape[1:]))}"]


def measure(uri: str, model: dict, data: np.ndarray | bytes, clients: int, window_s: float, windows: int = WINDOWS,
            shared_memory: str = "none", output_bytes: int = 0) -> dict:
    """One concurrency level measured by perf_analyzer; raises RuntimeError with its output when it fails."""
    binary, env = perf_analyzer()
    served = ServedModel.parse(uri)
    with tempfile.TemporaryDirectory(prefix="perf_analyzer-") as folder:
        report = Path(folder) / "report.csv"
        command = [str(binary), "-m", served.model, "-u", served.url, "-i", served.protocol,
                   "--concurrency-range", str(clients), "--measurement-interval", str(int(window_s * 1000)),
                   "--max-trials", str(windows), "--stability-percentage", "1000", "-f", str(report),
                   *input_args(model, data, Path(folder))]  # fmt: skip
        if shared_memory != "none":
            command += ["--shared-memory", shared_memory, "--output-shared-memory-size", str(output_bytes)]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0 or not report.is_file():
            raise RuntimeError(f"perf_analyzer failed (exit status {result.returncode}): "
                               f"{(result.stdout + result.stderr).strip()[-1500:]}")
        with open(report) as f:
            row = next(csv.DictReader(f))
    return {"clients": clients, "throughput_ips": float(row["Inferences/Second"]),
            **{key: int(row[column]) / 1000 for column, key in US_COLUMNS.items()},  # milliseconds
            "command": " ".join(command).replace(folder, "$TMP")}
