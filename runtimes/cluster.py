"""`predict ... --cluster local|ADDRESS`: the same protocol on a Ray cluster (`pip install 'sunet-deploy[cluster]'`).

Work is split by input: each image (or video) is one unit, and a large image (runtimes.large) one
unit per stripe of its output, written into its region of the image's mask store. Ray Data runs the
units with `map_batches` over a pool of actors, each holding one loaded runtime (one GPU each where
the cluster has GPUs); the driver plans the units, shows one progress bar (inputs, megapixels),
writes the large images' masks and overviews once all their stripes are in, and writes the summary.
Ray restarts a dead actor and retries its unit; each unit is counted once (its outputs rewritten
whole, to the same bytes, when it is retried). Outputs and the model are read from paths every
worker sees (a shared filesystem on a real cluster; on one machine, the same paths).

`--cluster local` starts a cluster of LOCAL_WORKERS CPUs for the run and shuts it down after. Ray
cannot be told to end its processes with the driver, so the processes ray.init starts carry a tag in
their environment, and a small guard process (a child that dies with the driver: sunet_deploy.lifetime)
notes them and the processes they start (Ray's agents, started without the tag), and kills them all
when the driver ends, however it ends (SIGKILL included).
`--cluster ADDRESS` joins a running cluster (`ray start --head` on one machine, `ray start
--address=HEAD:6379` on the others) and leaves it running.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from sunet_deploy.cli import first_line
from sunet_deploy.lifetime import descendants, die_with_parent, process_table, processes_with
from sunet_deploy.progress import progress

from .inputs import Job
from .large import attach_large, finish_large, finished, open_large, run_stripe

LOCAL_WORKERS = 2
TAG_VAR = "SUNET_CLUSTER_TAG"
GUARD_SECONDS = 10  # the most the guard spends ending a cluster
GUARD_POLL = 0.5  # seconds between the guard's notes of the cluster's processes
CLUSTER_HINT = "pip install 'sunet-deploy[cluster]' (Ray Data)"


class ClusterUnavailable(ValueError):
    """--cluster without Ray installed, or a cluster that cannot be reached; nothing has been written."""


def require_ray() -> None:
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ClusterUnavailable(f"--cluster needs {CLUSTER_HINT}: {exc}") from None


# ---------------------------------------------------------------- the local cluster's lifetime


def guard(tag: str, driver: int) -> None:
    """The guard's body. It notes every tagged process and every process those start: Ray starts its agents
    with an environment of its own, without the tag, and they may outlive the raylet that started them. On
    SIGTERM (the driver ended, or ended it) it SIGKILLs every one it noted that still runs, noting again
    until none is left: a process Ray was starting during one pass is found by the next."""
    me, noted = os.getpid(), {}  # pid -> start time: the pid's process, not a later one with the same pid

    def note() -> dict[int, tuple[int, int]]:
        table = process_table()
        tagged = set(processes_with(TAG_VAR, tag)) - {driver, me}
        noted.update({pid: table[pid][1] for pid in tagged | descendants(tagged, table) if pid in table})
        for pid in [pid for pid, start in noted.items() if table.get(pid, (0, -1))[1] != start]:
            del noted[pid]  # ended
        return table

    def end(*_: object) -> None:
        deadline = time.monotonic() + GUARD_SECONDS
        while note() and noted and time.monotonic() < deadline:
            for pid in list(noted):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        os._exit(0)

    signal.signal(signal.SIGTERM, end)
    if os.getppid() != driver:
        end()
    while True:
        note()
        time.sleep(GUARD_POLL)


class LocalCluster:
    """A Ray cluster on this machine for one run; `close()` (or the driver's death) ends all of it."""

    def __init__(self, workers: int = LOCAL_WORKERS) -> None:
        import ray

        self.tag = uuid.uuid4().hex
        driver = os.getpid()
        env = {k: v for k, v in os.environ.items() if k != TAG_VAR}
        self.guard = subprocess.Popen([sys.executable, "-c", f"from runtimes.cluster import guard; guard({self.tag!r}, {driver})"],
                                      env=env, preexec_fn=lambda: die_with_parent(driver))  # fmt: skip
        os.environ[TAG_VAR] = self.tag  # inherited by every process ray.init starts
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")

    def close(self) -> None:
        import ray

        ray.shutdown()
        os.environ.pop(TAG_VAR, None)
        self.guard.terminate()
        self.guard.wait()


# ---------------------------------------------------------------- the workers


class WorkerLoadError(RuntimeError):
    """A worker could not open or load the model: the run stops (every worker would fail alike)."""


def on_actor_gpu(options: Any) -> Any:
    """The options as a GPU actor must give them: Ray shows an actor only its own GPU (CUDA_VISIBLE_DEVICES),
    as device 0, whichever GPU the driver's options named."""
    if not options.on_cuda:
        return options
    names = {f.name for f in dataclasses.fields(options)}
    if "device_id" in names:
        return dataclasses.replace(options, device_id=0)
    return dataclasses.replace(options, device="cuda:0") if "device" in names else options


class PredictWorker:
    """A Ray Data actor: one loaded runtime; runs units (job index, stripe column or -1 for a whole input)."""

    def __init__(self, model: str, options: Any, protocol: Any, jobs: list[Job], make_predictor: Callable) -> None:
        from . import open_runtime

        self.jobs = jobs
        self.large: dict[int, Any] = {}
        self.name = f"{os.uname().nodename}:{os.getpid()}"
        if options.on_cuda:
            import ray

            self.name += f" GPU {','.join(map(str, ray.get_gpu_ids()))}"
        # A constructor that raises has Ray print its traceback at every retry; the first unit raises instead.
        self.predictor, self.load_error = None, ""
        try:
            runtime = open_runtime(model, on_actor_gpu(options))
            runtime.activate()
            self.predictor = make_predictor(runtime, protocol)
        except Exception as exc:
            self.load_error = (f"{model}: cannot be loaded by worker {self.name} "
                               f"({first_line(exc).removeprefix(f'{model}: ')})")  # fmt: skip

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        if self.load_error:
            raise WorkerLoadError(self.load_error)
        rows: dict[str, list] = defaultdict(list)
        for index, c0 in zip(batch["job"].tolist(), batch["stripe"].tolist()):
            job, start, error, pixels = self.jobs[index], time.perf_counter(), "", 0
            try:
                if c0 < 0:
                    self.predictor.run(job)
                    pixels = _pixels(job)
                else:
                    if index not in self.large:
                        self.large[index] = attach_large(self.predictor, job)
                    run = self.large[index]
                    run_stripe(self.predictor, run, c0)
                    pixels = run.stripe_pixels(c0)
            except Exception as exc:  # one bad input must not stop the others
                error = first_line(exc)
            for key, value in (("job", index), ("stripe", c0), ("error", error), ("pixels", pixels),
                               ("seconds", time.perf_counter() - start), ("worker", self.name)):  # fmt: skip
                rows[key].append(value)
        return dict(rows)


def _pixels(job: Job) -> int:
    if job.video:
        return 0
    with Image.open(job.mask_path) as mask:
        return mask.size[0] * mask.size[1]


# ---------------------------------------------------------------- the driver


def run_cluster(address: str, jobs: list[Job], runtime: Any, protocol: Any, resume: bool, out_dir: Path,
                make_predictor: Callable, summarize: Callable) -> tuple[dict, list[str]]:  # fmt: skip
    """Every job on the cluster; returns (the summary, the skip lines). The summary is `summarize`'s
    (predict's) plus the cluster's per-worker throughput."""
    import ray

    out_dir.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    predictor = make_predictor(runtime, protocol, resume)  # plans here; the workers infer
    workers: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
    units, larges = _plan(jobs, predictor, resume, failures)
    runtime.deactivate()  # each worker loads its own
    cluster = LocalCluster() if address == "local" and units else None
    try:
        if address != "local" and units:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        try:
            results = _run_units(units, jobs, runtime, protocol, make_predictor, workers)
        except Exception as exc:
            raise _load_error(exc) or exc
        for index, run in larges.items():
            errors = [results[(index, c0)][0] for c0 in run.todo if results[(index, c0)][0]]
            if errors:
                failures.append(f"{jobs[index].source}: {errors[0]}")
                continue
            busy = sum(results[(index, c0)][1] for c0 in run.todo)  # worker seconds of its stripes
            predictor.large.append(finish_large(run, predictor.palette, busy))
        failures += [f"{jobs[i].source}: {err}" for (i, c0), (err, _) in results.items() if c0 < 0 and err]
    finally:
        if cluster is not None:
            cluster.close()
        elif ray.is_initialized():
            ray.shutdown()
    for line in failures:
        tqdm.write(f"skipped: {line}", file=sys.stderr)
    summary = summarize(jobs, runtime, predictor, len(jobs) - len(failures), failures, None)
    summary["cluster"] = {"address": address, "workers": [
        {"worker": name, "units": int(n), "mpx": round(px / 1e6, 3), "busy_s": round(s, 2),
         "mpx_per_s": round(px / 1e6 / s, 3) if s else None} for name, (px, s, n) in sorted(workers.items())]}  # fmt: skip
    return summary, failures


def _load_error(exc: BaseException) -> WorkerLoadError | None:
    """The WorkerLoadError a worker raised, as one line. Ray Data re-raises a unit's error as a
    RayTaskError(UserCodeException) that keeps the worker's error only as text (its traceback's last line)."""
    marker = f"{WorkerLoadError.__module__}.{WorkerLoadError.__name__}: "
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for line in str(exc).splitlines():
            if line.startswith(marker):
                return WorkerLoadError(line.removeprefix(marker))
        exc = exc.__cause__ or exc.__context__
    return None


def _plan(jobs: list[Job], predictor: Any, resume: bool, failures: list[str]) -> tuple[list[tuple[int, int]], dict]:
    """The units: (job index, -1) for an input run whole, (job index, stripe column) for a large one's stripes."""
    units, larges = [], {}
    for index, job in enumerate(jobs):
        try:
            if resume and finished(job):
                predictor.resumed.append(str(job.source))
            elif job.large:
                larges[index] = open_large(predictor, job, resume)
                units += [(index, c0) for c0 in larges[index].todo]
            else:
                units.append((index, -1))
        except Exception as exc:
            failures.append(f"{job.source}: {first_line(exc)}")
    return units, larges


def _run_units(units: list[tuple[int, int]], jobs: list[Job], runtime: Any, protocol: Any, make_predictor: Callable,
               workers: dict) -> dict[tuple[int, int], tuple[str, float]]:  # fmt: skip
    """Run the units on an actor pool; one progress bar; returns each unit's error ('' when it worked) and seconds."""
    import ray

    results: dict[tuple[int, int], tuple[str, float]] = {}
    if not units:
        return results
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours is the one bar
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # its errors reach the user as our lines
    gpus = int(ray.cluster_resources().get("GPU", 0)) if runtime.options.on_cuda else 0
    if runtime.options.on_cuda and not gpus:
        raise ClusterUnavailable(f"{runtime.path} runs on CUDA and the cluster has no GPU")
    pool = gpus or max(1, int(ray.cluster_resources().get("CPU", 1)))
    items = [{"job": i, "stripe": c0} for i, c0 in units]
    data = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        PredictWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=min(pool, len(items))),
        num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1,
        fn_constructor_kwargs={"model": str(runtime.path), "options": runtime.options, "protocol": protocol,
                               "jobs": jobs, "make_predictor": make_predictor})  # fmt: skip
    whole = sum(1 for _, c0 in units if c0 < 0)
    with progress(total=len(units), desc=f"predict on {pool} worker(s) ({whole} inputs, {len(units) - whole} stripes)",
              unit="unit") as bar:  # fmt: skip
        mpx = 0.0
        for row in data.iter_rows():
            key = (int(row["job"]), int(row["stripe"]))
            if key in results:  # a retried unit's second report
                continue
            results[key] = (row["error"], float(row["seconds"]))
            stats = workers[row["worker"]]
            stats[0] += row["pixels"]
            stats[1] += row["seconds"]
            stats[2] += 1
            mpx += row["pixels"] / 1e6
            bar.set_postfix(Mpx=f"{mpx:.1f}")
            bar.update()
    return results
