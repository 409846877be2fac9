"""`python -m benchmarks.serving.serve_transports URI`: one client's latency per transport, interleaved with perf_analyzer.

    python -m benchmarks.serving.serve_transports triton://127.0.0.1:8000/sunet --rounds 5 --requests 8

A tensor model over HTTP, one request at a time (concurrency 1), in rounds: each round sends
--requests requests through each of our transports in turn and runs perf_analyzer for about as
long, plain and with system shared memory, so that a machine whose load drifts shifts every row
alike. Our transports: tritonclient's HTTP client (what the triton:// runtime used before
HttpTensors), HttpTensors (the default now), system shared memory over HTTP, and gRPC (the
triton+grpc:// runtime, on the server's gRPC port given by --grpc-port). Per transport: median
and p90 latency, the mean time outside the server (latency less the server's queue and compute
per request) and the client's own CPU time per request. Reports go to --output.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from runtimes import ArtifactError, RuntimeUnavailable, open_runtime
from runtimes.options import TritonOptions
from runtimes.stats import latency_summary
from runtimes.triton import ServedModel, server_statistics
from sunet_deploy.cli import EXIT_OK, EXIT_STATUS_HELP, EXIT_USAGE
from sunet_deploy.flags import add_flag

from . import perf_analyzer
from ..harness.env import environment, format_environment
from ..harness.report import write_json
from .serve import pa_outside_server_ms
from .served import output_bytes, payload, served_model

OURS = ("tritonclient HTTP (before)", "HttpTensors", "system shared memory (HTTP)", "gRPC")


def open_transport(name: str, uri: str, grpc_port: int):
    served = ServedModel.parse(uri)
    if name == "gRPC":
        runtime = open_runtime(f"triton+grpc://{served.url.rpartition(':')[0]}:{grpc_port}/{served.model}")
    else:
        runtime = open_runtime(uri, TritonOptions(shared_memory="system" if "shared" in name else "none"))
    runtime.activate()
    if name.startswith("tritonclient"):
        runtime.transport.close()
        runtime.transport = None  # TritonRuntime falls back to tritonclient's own client
    return runtime


def time_requests(runtime, data: np.ndarray, uri: str, count: int) -> dict:
    before = server_statistics(uri)
    latencies, cpu = [], []
    for _ in range(count):
        start, start_cpu = time.perf_counter(), time.thread_time()
        runtime.infer(data)
        latencies.append((time.perf_counter() - start) * 1000)
        cpu.append((time.thread_time() - start_cpu) * 1000)
    server = server_statistics(uri).since(before)
    server_ms = (server.queue_ms + server.compute_ms) / max(server.requests, 1)
    return {"samples_ms": latencies, "cpu_ms": cpu, "outside_ms": float(np.mean(latencies)) - server_ms}


def run_rounds(args, model: dict, data: np.ndarray) -> dict[str, list[dict]]:
    runtimes = {name: open_transport(name, args.uri, args.grpc_port) for name in OURS}
    measured: dict[str, list[dict]] = {name: [] for name in (*OURS, "perf_analyzer", "perf_analyzer, shared memory")}
    try:
        for runtime in runtimes.values():
            runtime.infer(data)  # first request: connections, regions
        for round_ in range(args.rounds):
            took = time.perf_counter()
            for name, runtime in runtimes.items():
                measured[name].append(time_requests(runtime, data, args.uri, args.requests))
            window = (time.perf_counter() - took) / len(OURS) / perf_analyzer.WINDOWS
            for name, shm in (("perf_analyzer", "none"), ("perf_analyzer, shared memory", "system")):
                measured[name].append(perf_analyzer.measure(args.uri, model, data, 1, window, shared_memory=shm,
                                                            output_bytes=output_bytes(model, args.size)))
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    finally:
        for runtime in runtimes.values():
            runtime.deactivate()
    return measured


def summarize(measured: dict[str, list[dict]]) -> list[dict]:
    """Per transport: latency over all rounds (perf_analyzer: the median over rounds of its p50 and p90)."""
    rows = []
    for name, rounds in measured.items():
        if name.startswith("perf_analyzer"):
            rows.append({"transport": name, "median": float(np.median([r["p50"] for r in rounds])),
                         "p90": float(np.median([r["p90"] for r in rounds])),
                         "outside_ms": float(np.median([pa_outside_server_ms(r) for r in rounds])), "cpu_ms": None,
                         "rounds": rounds})
            continue
        summary = latency_summary([ms for r in rounds for ms in r["samples_ms"]])
        rows.append({"transport": name, "median": summary["median"], "p90": summary["p90"],
                     "outside_ms": float(np.median([r["outside_ms"] for r in rounds])),
                     "cpu_ms": float(np.median([ms for r in rounds for ms in r["cpu_ms"]])), "rounds": rounds})
    return rows


def table(rows: list[dict]) -> str:
    reference = next(r for r in rows if r["transport"] == "perf_analyzer")["median"]
    lines = ["| transport | median ms | p90 ms | / perf_analyzer's p50 | outside the server, ms "
             "| client CPU ms/request |", "|---|---|---|---|---|---|"]
    for r in rows:
        cpu = "-" if r["cpu_ms"] is None else f"{r['cpu_ms']:.1f}"
        lines.append(f"| {r['transport']} | {r['median']:.1f} | {r['p90']:.1f} | {r['median'] / reference:.3f} | "
                     f"{r['outside_ms']:.1f} | {cpu} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving.serve_transports", description=__doc__,
                                     epilog=EXIT_STATUS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("uri", help="triton://HOST:PORT/MODEL of a tensor model (HTTP)")
    add_flag(parser, "--grpc-port", default=8001, help="the server's gRPC port (default 8001)")
    add_flag(parser, "--size", default=(512, 512), help="input size (default 512x512)")
    add_flag(parser, "--rounds", default=5)
    add_flag(parser, "--requests", default=8, help="requests per transport and round")
    add_flag(parser, "--output", default=Path("runs/bench/serve-transports"), help="report folder")
    args = parser.parse_args(argv)
    if not args.uri.startswith("triton://") or min(args.rounds, args.requests) < 1:
        parser.error("expected a triton:// (HTTP) URI and positive --rounds and --requests")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reason = perf_analyzer.status()["status"]
    try:
        model = served_model(args.uri)
    except (ArtifactError, RuntimeUnavailable) as exc:
        reason = str(exc)
    if reason != "run" or model["interface"] != "tensor":
        print(f"error: {reason if reason != 'run' else 'a tensor model is needed'}", file=sys.stderr)
        return EXIT_USAGE
    rows = summarize(run_rounds(args, model, payload("tensor", args.size)))
    result = {"environment": environment(), "settings": {**vars(args), "output": str(args.output)}, "model": model,
              "rows": rows}
    md = "\n\n".join([
        f"# Transports of the triton:// runtime against perf_analyzer: {model['model']} on {model['server']}",
        format_environment(result["environment"]),
        f"{args.size[0]}x{args.size[1]}, concurrency 1, {args.rounds} rounds of {args.requests} requests per "
        f"transport, perf_analyzer in each round for about as long ({perf_analyzer.METHOD}).", table(rows),
        "Outside the server: mean latency less the server's queue and compute per request (perf_analyzer: client "
        "send + network and server send/receive + client receive); median over rounds.",
    ]) + "\n"  # fmt: skip
    args.output.mkdir(parents=True, exist_ok=True)
    write_json(result, args.output / "transports.json")
    (args.output / "transports.md").write_text(md)
    print(md)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
