"""`python -m benchmarks.serving.labels_dtype`: what uint8 labels save over int64 through the Triton server.

Two steps. `prepare WORKDIR` writes a model repository with the same `--argmax` SUNet-64 model twice,
on Triton's python backend (tensor interface): `sunet_uint8` as `python -m export.onnx --argmax` exports
it now, and `sunet_int64` exported the way it was before labels became uint8 (the argmax's int64 indices
as the output, `export_int64_labels`). `measure` then runs, under `python -m runtimes.serve REPO -- ...`,
interleaved rounds on both models (the order alternates every round): our client (runtimes.triton over
HTTP, `--requests` images one after another) and NVIDIA's perf_analyzer (benchmarks.perf_analyzer, three
time windows), and writes JSON and markdown: bytes per image on the wire (the HTTP answer's body,
counted), medians per round, and the int64 / uint8 ratio of each round with its spread.

    python -m benchmarks.serving.labels_dtype prepare runs/bench/labels
    .venv-serve/bin/python -m runtimes.serve runs/bench/labels/repository --metrics-port 0 -- \\
        python -m benchmarks.serving.labels_dtype measure --rounds 5 -o docs/bench/serve/labels-uint8
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

from runtimes import open_runtime
from sunet_deploy.flags import add_flag

from . import perf_analyzer
from ..harness.env import environment, format_environment
from ..harness.report import write_json
from .served import served_model

MODELS = ("sunet_int64", "sunet_uint8")
SPLIT = ("client_send", "network", "server_queue", "server_compute_input", "server_compute_infer",
         "server_compute_output", "client_recv", "p50")
"""perf_analyzer's split of a request's latency (benchmarks.perf_analyzer), where the output's size shows."""
SIZE = (512, 512)


def export_int64_labels(checkpoint: Path, path: Path) -> Path:
    """An --argmax ONNX model with int64 labels, made the way export.onnx made it before labels became uint8:
    the graph ends at the argmax's int64 indices (export.heads.cast_labels left out). Tests of old artifacts
    use it too."""
    from export.onnx import export_onnx
    from sunet_deploy.formats import OnnxRecipe

    with mock.patch("export.onnx.cast_labels", lambda proto, dtype: proto):
        export_onnx(checkpoint, path, OnnxRecipe(argmax=True))
    return path


def prepare(workdir: Path) -> Path:
    from export.triton import export_repository_model
    from sunet_deploy.formats import OnnxRecipe, TritonRecipe

    from .artifacts import build_onnx, random_checkpoint

    checkpoint = random_checkpoint("sunet64", workdir)
    uint8 = build_onnx(checkpoint, workdir, OnnxRecipe(argmax=True))
    int64 = workdir / "sunet64_labels_int64.onnx"
    if not int64.is_file():
        export_int64_labels(checkpoint, int64)
    repository = workdir / "repository"
    for name, model in zip(MODELS, (int64, uint8)):
        if not (repository / name).is_dir():
            export_repository_model(model, repository, TritonRecipe(name=name, backend="python", io="tensor",
                                                                    max_batch=1))
    return repository


def answer_bytes(url: str, model: str, batch: np.ndarray, output: str) -> dict:
    """Bytes of one request's body and of its answer's body, binary tensors, as our client sends and reads them."""
    from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

    request = InferInput("input", list(batch.shape), "FP32")
    request.set_data_from_numpy(batch)
    body, json_size = InferenceServerClient.generate_request_body([request], [InferRequestedOutput(output)])
    host, _, port = url.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=300)
    try:
        headers = {"Inference-Header-Content-Length": str(json_size)}
        connection.request("POST", f"/v2/models/{model}/infer", body, headers)
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"{model}: HTTP {response.status}: {answer[:300]!r}")
    return {"request_bytes": len(body), "answer_bytes": len(answer)}


def our_client(uri: str, batch: np.ndarray, requests: int) -> list[float]:
    with open_runtime(uri) as runtime:
        runtime.infer(batch)  # warm-up: connection, first request
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            runtime.infer(batch)
            times.append((time.perf_counter() - start) * 1000)
    return times


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def measure(url: str, rounds: int, requests: int, window_s: float) -> dict:
    batch = np.random.default_rng(0).standard_normal((1, 3, *SIZE), dtype=np.float32)
    uris = {name: f"triton://{url}/{name}" for name in MODELS}
    models = {name: served_model(uri) for name, uri in uris.items()}
    result = {"environment": environment(), "size": list(SIZE), "models": models,
              "perf_analyzer": perf_analyzer.status(),
              "bytes": {n: answer_bytes(url, n, batch, models[n]["output"]) for n in MODELS}, "rounds": []}
    for r in range(rounds):
        row = {}
        for name in MODELS if r % 2 == 0 else MODELS[::-1]:
            ours = our_client(uris[name], batch, requests)
            pa = None
            if result["perf_analyzer"]["status"] == "run":
                pa = perf_analyzer.measure(uris[name], models[name], batch, 1, window_s, perf_analyzer.WINDOWS)
            row[name] = {"ours_ms": ours, "ours_median_ms": statistics.median(ours), "perf_analyzer": pa}
            print(f"round {r + 1}/{rounds} {name}: ours median {row[name]['ours_median_ms']:.1f} ms"
                  + (f", perf_analyzer p50 {pa['p50']:.1f} ms" if pa else ""), flush=True)
        result["rounds"].append(row)
    return summarize(result)


def summarize(result: dict) -> dict:
    """Per-round int64 / uint8 ratios of our median and perf_analyzer's p50, and their spread."""
    rounds = result["rounds"]
    ratios = {"ours": [r["sunet_int64"]["ours_median_ms"] / r["sunet_uint8"]["ours_median_ms"] for r in rounds]}
    if all(r[m]["perf_analyzer"] for r in rounds for m in MODELS):
        ratios["perf_analyzer"] = [r["sunet_int64"]["perf_analyzer"]["p50"]
                                   / r["sunet_uint8"]["perf_analyzer"]["p50"] for r in rounds]
    result["ratio_int64_over_uint8"] = {k: spread(v) for k, v in ratios.items()}
    result["median_ms"] = {m: {"ours": spread([r[m]["ours_median_ms"] for r in rounds])} for m in MODELS}
    for m in MODELS:
        if "perf_analyzer" in ratios:
            result["median_ms"][m]["perf_analyzer_p50"] = spread([r[m]["perf_analyzer"]["p50"] for r in rounds])
    return result


def markdown(result: dict) -> str:
    b = result["bytes"]
    lines = [f"# uint8 vs int64 labels through Triton: SUNet-64 OS16, {result['size'][0]}x{result['size'][1]}, "
             "batch 1", "", "| model | labels output | request body bytes | answer body bytes |", "|---|---|---|---|"]
    for m in MODELS:
        output_type = result["models"][m]["output_type"]
        lines.append(f"| {m} | {output_type} | {b[m]['request_bytes']} | {b[m]['answer_bytes']} |")
    lines += ["", "| per round (median of the round) | int64 ms | uint8 ms | int64 / uint8 |", "|---|---|---|---|"]
    for i, r in enumerate(result["rounds"], 1):
        a, u = r["sunet_int64"], r["sunet_uint8"]
        lines.append(f"| {i}: ours | {a['ours_median_ms']:.1f} | {u['ours_median_ms']:.1f} | "
                     f"{a['ours_median_ms'] / u['ours_median_ms']:.3f} |")
        if a["perf_analyzer"] and u["perf_analyzer"]:
            pa, pu = a["perf_analyzer"]["p50"], u["perf_analyzer"]["p50"]
            lines.append(f"| {i}: perf_analyzer p50 | {pa:.1f} | {pu:.1f} | {pa / pu:.3f} |")
    lines.append("")
    if all(r[m]["perf_analyzer"] for r in result["rounds"] for m in MODELS):
        lines += ["perf_analyzer's split, median over the rounds (ms):", "",
                  "| model | " + " | ".join(SPLIT) + " |", "|---|" + "---|" * len(SPLIT)]
        for m in MODELS:
            values = [statistics.median(r[m]["perf_analyzer"][k] for r in result["rounds"]) for k in SPLIT]
            lines.append(f"| {m} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
        lines.append("")
    for k, s in result["ratio_int64_over_uint8"].items():
        lines.append(f"- int64 / uint8, {k}: median {s['median']:.3f} over {len(s['values'])} rounds "
                     f"(min {s['min']:.3f}, max {s['max']:.3f})")
    lines += ["", "```", format_environment(result["environment"]), "```", ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving.labels_dtype", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    prep = sub.add_parser("prepare", help="export the two models and write their repository")
    prep.add_argument("workdir", type=Path)
    run = sub.add_parser("measure", help="measure both served models, interleaved")
    run.add_argument("--url", default="127.0.0.1:8000", help="the server's HTTP address")
    run.add_argument("--rounds", type=int, default=5)
    add_flag(run, "--requests", default=10, help="timed requests of our client per model and round")
    run.add_argument("--perf-analyzer-window", type=float, default=10.0,
                     help="each of perf_analyzer's 3 time windows (s), per model and round")
    run.add_argument("-o", "--output", type=Path, required=True, help="report path without suffix (.json, .md)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.step == "prepare":
        print(f"wrote {prepare(args.workdir)}")
        return 0
    result = measure(args.url, args.rounds, args.requests, args.perf_analyzer_window)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_json(result, args.output.with_suffix(".json"))
    args.output.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
