"""`python -m benchmarks.serving.serve URI`: throughput and latency of a served model under concurrent clients.

    python -m benchmarks.serving.serve triton://127.0.0.1:8000/sunet                  # HTTP, tensor model
    python -m benchmarks.serving.serve triton+grpc://127.0.0.1:8001/sunet_image --concurrency 1 4

For each concurrency level, that many client threads (each with its own connection) send one image
per request, back to back: all warm up for --warmup seconds, then every request of the next
--duration seconds is timed. A tensor model gets a normalised float32 1x3xHxW batch through the
triton:// runtime adapter; an image model (export.triton --backend python --io image) gets a PNG of
a synthetic image of --size. Latency is per request as the client sees it; throughput is images per
second of wall time. The server's own statistics over the timed part give the batch sizes the
dynamic batcher formed, the time requests waited in its queue and the compute time per execution.
Reports (JSON with every sample, Markdown, PNG) go to --output.

NVIDIA's perf_analyzer (installed by make serve-venv) measures the same model at the same levels,
image size, protocol and transport right after our client, and its throughput and percentiles go
beside ours in the report; where it is not installed the report says so. --shared-memory system
sends both clients' tensors through Triton's system shared memory (a server on this host).
--search tries serving configurations with perf_analyzer instead (benchmarks.serving.serve_search).
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from runtimes import ArtifactError, RuntimeUnavailable, open_runtime  # noqa: E402
from runtimes.options import TritonOptions  # noqa: E402
from runtimes.stats import latency_summary  # noqa: E402
from runtimes.triton import TritonImageClient, server_statistics  # noqa: E402
from sunet_deploy.cli import EXIT_FAILED, EXIT_OK, EXIT_STATUS_HELP, EXIT_USAGE  # noqa: E402
from sunet_deploy.flags import add_flag  # noqa: E402

from . import perf_analyzer  # noqa: E402
from .served import output_bytes, payload, served_model  # noqa: E402
from ..harness.env import environment, format_environment  # noqa: E402
from ..harness.report import write_json  # noqa: E402


@contextmanager
def sender(uri: str, interface: str, data: np.ndarray | bytes,
           shared_memory: str = "none") -> Iterator[Callable[[], object]]:
    """One client connection; yields a function that sends one request and waits for its answer."""
    if interface == "image":
        with TritonImageClient(uri) as client:
            yield lambda: client.masks([data])
    else:
        with open_runtime(uri, TritonOptions(shared_memory=shared_memory)) as runtime:
            yield lambda: runtime.infer(data)


def run_clients(uri: str, interface: str, data, clients: int, warmup: float, duration: float,
                shared_memory: str = "none"):
    """`clients` threads warm up together, then time requests for `duration` s; returns the latencies (ms),
    the wall time of the timed part and the server's statistics over it."""
    samples: list[list[float]] = [[] for _ in range(clients)]
    warm, go = threading.Barrier(clients + 1), threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            with sender(uri, interface, data, shared_memory) as send:
                end = time.perf_counter() + warmup
                while time.perf_counter() < end:
                    send()
                warm.wait()
                go.wait()
                end = time.perf_counter() + duration
                while time.perf_counter() < end:
                    start = time.perf_counter()
                    send()
                    samples[index].append((time.perf_counter() - start) * 1000)
        except BaseException as exc:  # the first failure stops every thread, and is raised below
            errors.append(exc)
            warm.abort()
            go.abort()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        warm.wait()
        before = server_statistics(uri)
        go.wait()
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    wall = time.perf_counter() - start
    return [ms for per_client in samples for ms in per_client], wall, server_statistics(uri).since(before)


def measure_level(uri: str, interface: str, data, clients: int, warmup: float, duration: float,
                  shared_memory: str = "none") -> dict:
    latencies, wall, server = run_clients(uri, interface, data, clients, warmup, duration, shared_memory)
    return {
        "clients": clients, "requests": len(latencies), "wall_s": wall, "throughput_ips": len(latencies) / wall,
        "latency_ms": latency_summary(latencies),
        "server": {"batches": server.batches, "mean_batch": server.mean_batch, "executions": server.executions,
                   "queue_ms_per_request": server.queue_ms / max(server.requests, 1),
                   "compute_ms_per_execution": server.compute_ms / max(server.executions, 1)},
        "samples_ms": latencies,
    }  # fmt: skip


COLUMNS = ("clients", "requests", "images/s", "median ms", "p90 ms", "p99 ms", "max ms",
           "batches formed (size x count)", "mean batch", "queue ms/request", "compute ms/batch")


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lat, server = r["latency_ms"], r["server"]
        batches = ", ".join(f"{size}x{count}" for size, count in server["batches"].items()) or "-"
        percentiles = (f"{lat[k]:.1f}" for k in ("median", "p90", "p99", "max"))
        cells = (r["clients"], r["requests"], f"{r['throughput_ips']:.2f}", *percentiles, batches,
                 f"{server['mean_batch']:.2f}", f"{server['queue_ms_per_request']:.1f}",
                 f"{server['compute_ms_per_execution']:.1f}")
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


PA_COLUMNS = ("clients", "images/s: ours", "perf_analyzer", "median ms: ours", "perf_analyzer p50", "p90 ms: ours",
              "perf_analyzer", "p99 ms: ours", "perf_analyzer", "ours / perf_analyzer (median / p50)",
              "outside the server, ms: ours", "perf_analyzer")
SPLIT = ("client_send", "network", "server_queue", "server_compute_input", "server_compute_infer",
         "server_compute_output", "client_recv")


def outside_server_ms(row: dict) -> float:
    """Our mean latency less the server's time per request (queue, and the compute of the batch it was in):
    the client's and the network's share, which the server's varying compute time does not blur."""
    server = row["server"]
    return row["latency_ms"]["mean"] - server["queue_ms_per_request"] - server["compute_ms_per_execution"]


def pa_outside_server_ms(pa: dict) -> float:
    return pa["client_send"] + pa["network"] + pa["client_recv"]


def perf_analyzer_tables(rows: list[dict]) -> str:
    """Our client and perf_analyzer side by side per level, then perf_analyzer's split of its average latency."""
    lines = ["| " + " | ".join(PA_COLUMNS) + " |", "|" + "---|" * len(PA_COLUMNS)]
    split = ["| clients | " + " | ".join(key.replace("_", " ") for key in SPLIT) + " |",
             "|" + "---|" * (len(SPLIT) + 1)]
    for r in rows:
        pa, lat = r["perf_analyzer"], r["latency_ms"]
        cells = (r["clients"], f"{r['throughput_ips']:.2f}", f"{pa['throughput_ips']:.2f}", f"{lat['median']:.1f}",
                 f"{pa['p50']:.1f}", f"{lat['p90']:.1f}", f"{pa['p90']:.1f}", f"{lat['p99']:.1f}", f"{pa['p99']:.1f}",
                 f"{lat['median'] / pa['p50']:.3f}", f"{outside_server_ms(r):.1f}", f"{pa_outside_server_ms(pa):.1f}")
        lines.append("| " + " | ".join(map(str, cells)) + " |")
        split.append(f"| {r['clients']} | " + " | ".join(f"{pa[key]:.1f}" for key in SPLIT) + " |")
    return "\n".join(lines) + "\n\nperf_analyzer's split of its average latency (ms):\n\n" + "\n".join(split)


def perf_analyzer_section(result: dict) -> list[str]:
    status = result["perf_analyzer"]
    if status["status"] != "run":
        return ["## NVIDIA perf_analyzer", f"Not run: {status['status']}."]
    command = re.sub(r"--concurrency-range \d+", "--concurrency-range LEVEL",
                     result["rows"][0]["perf_analyzer"]["command"])
    return ["## NVIDIA perf_analyzer on the same levels", perf_analyzer_tables(result["rows"]),
            f"perf_analyzer {status['version']}, measured right after our client at each level: "
            f"`{command}` (one level per run; "
            f"{perf_analyzer.METHOD}). Both clients ran on this machine, beside the server. Outside the server: "
            "mean latency less the server's queue and compute per request (perf_analyzer: its client send, "
            "network and server send/receive, and client receive)."]


def markdown(result: dict) -> str:
    model, settings = result["model"], result["settings"]
    transport = "" if settings["shared_memory"] == "none" else f", tensors through {settings['shared_memory']} " \
                                                               "shared memory"
    return "\n\n".join([
        f"# Serving {model['model']} on {model['server']}", "## Environment (the client's machine)",
        format_environment(result["environment"]),
        "## Served model", "\n".join(f"- {key}: {value}" for key, value in model.items()),
        f"## Concurrent clients ({settings['size'][0]}x{settings['size'][1]} images, one per request, "
        f"{settings['warmup']:g} s warm-up, {settings['duration']:g} s timed per level{transport})",
        table(result["rows"]),
        "Latency: per request, as a client sees it. Batches formed, queue and compute: the server's statistics over "
        "the timed part (compute is input + inference + output per execution of a batch).",
        *perf_analyzer_section(result),
    ]) + "\n"  # fmt: skip


def plot(rows: list[dict], path: Path) -> Path:
    clients = [r["clients"] for r in rows]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.6))
    left.plot(clients, [r["throughput_ips"] for r in rows], "o-", label="ours")
    left.set_ylabel("images / s")
    for key in ("median", "p90", "p99"):
        middle.plot(clients, [r["latency_ms"][key] for r in rows], "o-", label=key)
    if all("perf_analyzer" in r for r in rows):
        left.plot(clients, [r["perf_analyzer"]["throughput_ips"] for r in rows], "s--", label="perf_analyzer")
        middle.plot(clients, [r["perf_analyzer"]["p50"] for r in rows], "s--", label="perf_analyzer p50")
        left.legend()
    middle.set_ylabel("latency (ms)")
    middle.legend()
    right.plot(clients, [r["server"]["mean_batch"] for r in rows], "o-")
    right.set_ylabel("mean batch the server formed")
    for ax in (left, middle, right):
        ax.set_xlabel("concurrent clients")
        ax.set_xticks(clients)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving.serve", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("uri", help="triton://HOST:PORT/MODEL (HTTP) or triton+grpc://HOST:PORT/MODEL (gRPC); with "
                                    "--search the model's folder in a repository (REPOSITORY/MODEL)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8], help="client counts to measure")
    add_flag(parser, "--size", default=(512, 512), help="image size (default 512x512)")
    add_flag(parser, "--warmup", default=3.0, help="warm-up seconds per level")
    add_flag(parser, "--duration", default=20.0, help="timed seconds per level")
    add_flag(parser, "--output", default=Path("runs/bench/serve"), help="report folder")
    add_flag(parser, "--shared-memory", choices=("none", "system"), default="none",
             help="tensor models: pass tensors through Triton's system shared memory (a server on this host)")
    parser.add_argument("--no-perf-analyzer", dest="perf_analyzer", action="store_false",
                        help="measure with our client only")
    search = parser.add_argument_group("configuration search (--search; perf_analyzer only)")
    search.add_argument("--search", action="store_true", help="serve every combination below in turn, measure it "
                        "and write the best into the model's config.pbtxt (the earlier one kept as .previous)")
    search.add_argument("--goal", choices=("latency", "throughput"), default="throughput",
                        help="latency: lowest p50 at the lowest level; throughput: most images/s at any level")
    search.add_argument("--search-instances", type=int, nargs="+", default=[1, 2], metavar="N")
    search.add_argument("--search-max-batch", type=int, nargs="+", default=[1, 4], metavar="N")
    search.add_argument("--search-queue-delay", type=int, nargs="+", default=[0, 10000], metavar="US")
    args = parser.parse_args(argv)
    if min(args.concurrency) < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--concurrency and --duration must be positive, --warmup not negative")
    if args.search and not (Path(args.uri) / "config.pbtxt").is_file():
        parser.error(f"--search takes a model's folder in a repository; {args.uri} has no config.pbtxt")
    if min(args.search_instances + args.search_max_batch) < 1 or min(args.search_queue_delay) < 0:
        parser.error("--search-instances and --search-max-batch must be positive, --search-queue-delay not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.search:
        return run_search(args)
    try:
        model = served_model(args.uri)
    except (ArtifactError, RuntimeUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if model["interface"] == "image" and args.shared_memory != "none":
        print("error: --shared-memory applies to tensor models (an image model's masks vary in size)", file=sys.stderr)
        return EXIT_USAGE
    data = payload(model["interface"], args.size)
    status = perf_analyzer.status() if args.perf_analyzer else {"status": "--no-perf-analyzer given"}
    rows = []
    for clients in args.concurrency:
        rows.append(measure_level(args.uri, model["interface"], data, clients, args.warmup, args.duration,
                                  args.shared_memory))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
        if status["status"] == "run":
            rows[-1]["perf_analyzer"] = perf_analyzer.measure(
                args.uri, model, data, clients, args.duration / perf_analyzer.WINDOWS, perf_analyzer.WINDOWS,
                args.shared_memory, output_bytes(model, args.size))
            print(perf_analyzer_tables(rows[-1:]).splitlines()[2], flush=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result = {"environment": environment(), "settings": settings, "model": model, "perf_analyzer": status,
              "rows": rows}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "serve.md").write_text(markdown(result))
    print(markdown(result))
    written = (write_json(result, args.output / "serve.json"), args.output / "serve.md",
               plot(rows, args.output / "serve.png"))
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


def run_search(args: argparse.Namespace) -> int:
    from .serve_search import search

    reason = perf_analyzer.status()["status"]
    if reason != "run":
        print(f"error: --search measures with perf_analyzer: {reason}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return search(args)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"error: {exc}".splitlines()[0], file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
