"""`python -m benchmarks.serving.serve --search REPOSITORY/MODEL`: a quick search of serving configurations.

In the manner of Triton Model Analyzer's brute search, in our terms: every combination of
instance counts, largest batch and dynamic-batcher queue delay is served in turn (a copy of the
model folder with that config.pbtxt, the version folders linked, on free ports, by
`python -m runtimes.serve` in the serving environment) and measured by perf_analyzer at the
--concurrency levels. The best configuration for the goal goes into the model's config.pbtxt:

- latency: the lowest perf_analyzer p50 at the lowest concurrency level;
- throughput: the most images per second at any level.

The earlier config.pbtxt is kept beside it as config.pbtxt.previous (.previous.1, ... if that
exists); the new one starts with comments saying what was measured. On CPU each instance gets
cores / instances ONNX Runtime threads (the intra_op_thread_count parameter), so two instances on
two cores compete for the same cores as one with two threads: say so next to any number.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from export.triton import THREADS_KEY, validate_config
from runtimes.serve import PROJECT

from . import perf_analyzer
from ..harness.env import environment, format_environment
from ..harness.report import write_json
from .served import payload, served_model

READY_TIMEOUT = 180


@dataclass(frozen=True)
class Candidate:
    instances: int
    max_batch: int
    queue_delay_us: int


def candidates(instances: list[int], max_batch: list[int], delays: list[int]) -> list[Candidate]:
    return [Candidate(*values) for values in itertools.product(instances, max_batch, delays)]


def read_config(model_dir: Path):
    return validate_config((model_dir / "config.pbtxt").read_text())


def candidate_config(config, candidate: Candidate):
    """A copy of the parsed config with the candidate's batching and instances (and CPU threads per instance)."""
    config = type(config).FromString(config.SerializeToString())
    config.max_batch_size = candidate.max_batch
    config.dynamic_batching.max_queue_delay_microseconds = candidate.queue_delay_us
    kind = config.instance_group[0].kind if config.instance_group else 0
    del config.instance_group[:]
    config.instance_group.add(count=candidate.instances, kind=kind)
    if config.backend == "python" or config.platform == "onnxruntime_onnx":
        config.parameters[THREADS_KEY].string_value = str(max(1, (os.cpu_count() or 1) // candidate.instances))
    return config


def config_text(config) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config, as_utf8=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(model_dir: Path, config, folder: Path):
    """The model with `config` served from a repository under `folder`; yields its HTTP URI."""
    repository = folder / "repository"
    shutil.rmtree(repository, ignore_errors=True)
    copy = repository / model_dir.name
    copy.mkdir(parents=True)
    for entry in model_dir.iterdir():
        if entry.name != "config.pbtxt" and not entry.name.startswith("config.pbtxt."):
            (copy / entry.name).symlink_to(entry.resolve())
    (copy / "config.pbtxt").write_text(config_text(config))
    http, log = free_port(), folder / "server.log"
    command = [str(PROJECT / ".venv-serve" / "bin" / "python"), "-m", "runtimes.serve", str(repository),
               "--http-port", str(http), "--grpc-port", str(free_port()), "--metrics-port", "0", "--exit-timeout", "2"]
    with open(log, "w") as out:
        server = subprocess.Popen(command, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while "ready in" not in log.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become ready:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"triton://127.0.0.1:{http}/{model_dir.name}"
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def measure_candidate(model_dir: Path, config, candidate: Candidate, args, folder: Path) -> dict:
    with serving(model_dir, candidate_config(config, candidate), folder) as uri:
        model = served_model(uri)
        data = payload(model["interface"], args.size)
        levels = [perf_analyzer.measure(uri, model, data, clients, args.duration / perf_analyzer.WINDOWS)
                  for clients in args.concurrency]
    return {**asdict(candidate), "levels": levels}


def score(result: dict, goal: str) -> float:
    """Higher is better."""
    if goal == "latency":
        return -min(result["levels"], key=lambda level: level["clients"])["p50"]
    return max(level["throughput_ips"] for level in result["levels"])


def keep_previous(path: Path) -> Path:
    """Move config.pbtxt aside under a name nothing holds yet; that name."""
    kept = path.with_name(path.name + ".previous")
    n = 0
    while kept.exists():
        n += 1
        kept = path.with_name(f"{path.name}.previous.{n}")
    path.rename(kept)
    return kept


def write_best(model_dir: Path, config, best: dict, goal: str, output: Path) -> Path:
    candidate = Candidate(best["instances"], best["max_batch"], best["queue_delay_us"])
    lines = [f"# benchmarks.serving.serve --search, goal {goal}: instances {candidate.instances}, max batch "
             f"{candidate.max_batch}, queue delay {candidate.queue_delay_us} us, chosen from the measurements in "
             f"{output / 'search.md'}"]
    lines += [f"# {level['clients']} clients: {level['throughput_ips']:.2f} images/s, p50 {level['p50']:.1f} ms"
              for level in best["levels"]]
    text = "\n".join(lines) + "\n" + config_text(candidate_config(config, candidate))
    validate_config(text)
    kept = keep_previous(model_dir / "config.pbtxt")
    (model_dir / "config.pbtxt").write_text(text)
    return kept


def table(results: list[dict], best: dict) -> str:
    levels = [level["clients"] for level in results[0]["levels"]]
    head = ["instances", "max batch", "queue delay us"]
    head += [f"{c} clients: {what}" for c in levels for what in ("images/s", "p50 ms", "p99 ms")]
    lines = ["| " + " | ".join(head) + " | best |", "|" + "---|" * (len(head) + 1)]
    for r in results:
        cells = [r["instances"], r["max_batch"], r["queue_delay_us"]]
        cells += [f"{lv[key]:.{2 if key == 'throughput_ips' else 1}f}" for lv in r["levels"]
                  for key in ("throughput_ips", "p50", "p99")]
        lines.append("| " + " | ".join(map(str, cells)) + f" | {'yes' if r is best else ''} |")
    return "\n".join(lines)


def search(args) -> int:
    model_dir = Path(args.uri)
    config = read_config(model_dir)
    results = []
    with tempfile.TemporaryDirectory(prefix="serve-search-") as folder:
        for candidate in candidates(args.search_instances, args.search_max_batch, args.search_queue_delay):
            results.append(measure_candidate(model_dir, config, candidate, args, Path(folder)))
            print(table(results[-1:], None).splitlines()[-1], flush=True)
    best = max(results, key=lambda r: score(r, args.goal))
    args.output.mkdir(parents=True, exist_ok=True)
    kept = write_best(model_dir, config, best, args.goal, args.output)
    report = {"environment": environment(), "model": str(model_dir), "goal": args.goal, "size": args.size,
              "duration": args.duration, "concurrency": args.concurrency, "results": results, "best": best}
    write_json(report, args.output / "search.json")
    md = "\n\n".join([
        f"# Serving configurations of {model_dir.name} (goal: {args.goal})", format_environment(report["environment"]),
        f"perf_analyzer over HTTP, {args.size[0]}x{args.size[1]} inputs, {perf_analyzer.METHOD}, "
        f"{args.duration:g} s per level; CPU threads per instance: cores / instances.", table(results, best),
        f"Written to {model_dir / 'config.pbtxt'}; the earlier config is {kept}.",
    ]) + "\n"  # fmt: skip
    (args.output / "search.md").write_text(md)
    print(md)
    print(f"wrote {model_dir / 'config.pbtxt'} (earlier: {kept.name}), {args.output / 'search.json'}, "
          f"{args.output / 'search.md'}")
    return 0
