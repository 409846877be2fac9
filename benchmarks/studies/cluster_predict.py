"""`python -m benchmarks.studies.cluster_predict MODEL --out docs/bench/cluster`: predict on a local Ray cluster.

A folder of synthetic images (default 500 of 128x128) predicted by one process, then by `--cluster
local` (2 workers) twice: undisturbed, and with one worker SIGKILLed once a tenth of the masks are
written. Reports the masks against the single process's (byte for byte), every image written once
(the summary counts each input once), throughput (images/s, Mpx/s; the cluster's wall time includes
starting and stopping Ray), each worker's Mpx/s, and the processes of each run left after it ended
(found by an environment variable every process of the run inherits). Writes report.json and report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cv2

from sunet_deploy.data.synthetic import SyntheticSegmentation
from sunet_deploy.flags import add_flag
from sunet_deploy.lifetime import command_line, die_with_parent, processes_with

from ..harness.report import save_report

MARK = "SUNET_BENCH_CLUSTER_MARK"


def marked(mark: str) -> list[tuple[int, str]]:
    return [(pid, command_line(pid)[:80]) for pid in processes_with(MARK, mark)]


def run(model: str, folder: Path, out: Path, flags: list[str], kill_after: int | None = None) -> dict:
    mark, parent = uuid.uuid4().hex, os.getpid()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "runtimes.predict", model, str(folder), "-o", str(out), *flags],
                            env={**os.environ, MARK: mark}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=lambda: die_with_parent(parent))  # fmt: skip
    killed = None
    while kill_after is not None and killed is None and proc.poll() is None:
        workers = [pid for pid, cmd in marked(mark) if "PredictWorker" in cmd]
        if workers and len(list(out.glob("*_mask.png"))) >= kill_after:
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    output, _ = proc.communicate()
    seconds = time.perf_counter() - start
    time.sleep(1.0)
    summary = json.loads((out / "predict_summary.json").read_text())
    return {"rc": proc.returncode, "seconds": round(seconds, 2), "killed_worker": killed,
            "left_after_1s": marked(mark), "inputs": summary["inputs"], "written": summary["written"],
            "skipped": len(summary["skipped"]), "workers": (summary.get("cluster") or {}).get("workers"),
            "tail": output.strip().splitlines()[-4:]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.cluster_predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("model")
    add_flag(parser, "--output", default=Path("docs/bench/cluster"), help="report folder")
    add_flag(parser, "--workdir", default=Path("runs/cluster_predict"), help="scenes, images and masks (GBs for the large sizes)")
    add_flag(parser, "--synthetic-samples", default=500, help="how many synthetic images to segment")
    add_flag(parser, "--synthetic-size", default=(128, 128), help="their height x width")
    args = parser.parse_args(argv)
    folder = args.workdir / "images"
    if not folder.exists():
        folder.mkdir(parents=True)
        data = SyntheticSegmentation(args.synthetic_samples, args.synthetic_size, split="test")
        for k in range(args.synthetic_samples):
            cv2.imwrite(str(folder / f"{data.name(k)}.png"), cv2.cvtColor(data[k][0], cv2.COLOR_RGB2BGR))
    result = {"model": args.model, "images": args.synthetic_samples, "size": list(args.synthetic_size), "cpus": os.cpu_count(),
              "load_at_start": round(os.getloadavg()[0], 1)}  # fmt: skip
    result["single"] = run(args.model, folder, args.workdir / "single", [])
    result["cluster"] = run(args.model, folder, args.workdir / "cluster", ["--cluster", "local"])
    result["cluster_killed"] = run(args.model, folder, args.workdir / "killed", ["--cluster", "local"], args.synthetic_samples // 10)
    reference = {p.name: p.read_bytes() for p in (args.workdir / "single").glob("*_mask.png")}
    for key in ("cluster", "cluster_killed"):
        masks = {p.name: p.read_bytes() for p in (args.workdir / ("cluster" if key == "cluster" else "killed")).glob("*_mask.png")}
        result[key]["masks_identical_to_single"] = masks == reference and len(masks) == args.synthetic_samples
    mpx = args.synthetic_samples * args.synthetic_size[0] * args.synthetic_size[1] / 1e6
    for key in ("single", "cluster", "cluster_killed"):
        result[key]["images_per_s"] = round(args.synthetic_samples / result[key]["seconds"], 2)
        result[key]["mpx_per_s"] = round(mpx / result[key]["seconds"], 3)
    lines = ["# predict --cluster local (Ray, 2 workers) against one process", "",
             f"{args.synthetic_samples} images of {args.synthetic_size[0]}x{args.synthetic_size[1]}, model `{args.model}`, {result['cpus']} CPUs shared "
             f"(load average {result['load_at_start']} at start). Wall time includes Ray's start and stop.", "",
             "| run | exit | seconds | images/s | Mpx/s | written/inputs | masks = single | left after 1 s | worker Mpx/s |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for key in ("single", "cluster", "cluster_killed"):
        r = result[key]
        per = ", ".join(f"{w['mpx_per_s']}" for w in r["workers"] or []) or "-"
        lines.append(f"| {key}{' (worker ' + str(r['killed_worker']) + ' killed)' if r['killed_worker'] else ''} | "
                     f"{r['rc']} | {r['seconds']} | {r['images_per_s']} | {r['mpx_per_s']} | {r['written']}/{r['inputs']} | "
                     f"{r.get('masks_identical_to_single', '-')} | {len(r['left_after_1s'])} | {per} |")  # fmt: skip
    save_report(result, "\n".join(lines) + "\n", args.output, "report")
    return 0


if __name__ == "__main__":
    sys.exit(main())
