"""`python -m benchmarks.latency`: latency, throughput and memory of every available runtime.

    python -m benchmarks.latency --preset cpu                      # SUNet-64 OS16, 512x512, batch 1, CPU
    python -m benchmarks.latency runs/demo/best.safetensors --device cuda --batch 1 8 --size 512x512
    python -m benchmarks.latency --arch sunet64 --arch resnet101 --variants pytorch-fp32,onnxruntime-cpu

Each row warms up for --warmup seconds, then times at least --duration seconds AND --iterations
iterations. With --rounds R the timed part is split into R rounds that visit every runtime in turn,
so a load that comes and goes on a shared machine hits every row alike. Speed-ups are the PyTorch
eager FP32 row's median latency over each row's, for the same model, batch and size, in this run.
Every round also times the machine's matrix-multiply rate (benchmarks.harness.floor); each row's "x floor"
is its median latency over the model's FLOPs at the best of those rates.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runtimes import Runtime
from sunet_deploy.artifact import read_checkpoint_info
from sunet_deploy.cli import EXIT_STATUS_HELP
from sunet_deploy.flags import add_flag, add_renamed
from sunet_deploy.models import ModelSpec

from .harness.artifacts import failure_reason, open_variant, random_checkpoint
from .harness.flops import model_table, spec_gflops
from .harness.floor import floor_ms, measure_rates, merge_best
from .harness.measure import DeviceMemory, Samples, host_memory, time_iterations, warm_up
from .harness.report import nothing_measured, write_reports
from .harness.variants import Variant, reference_name, split_available, variants_for

PRESETS = {
    "cpu": {
        "model": ["sunet64"], "size": [(512, 512)], "batch": [1], "device": "cpu",
        "variants": "pytorch-fp32,pytorch-fp32-channels-last,onnxruntime-cpu,aoti-cpu,pytorch-bf16-channels-last",
        "warmup": 3.0, "duration": 20.0, "iterations": 20, "rounds": 4, "output": Path("runs/bench/cpu"),
    },
    "cpu-int8": {
        "model": ["sunet64"], "size": [(512, 512)], "batch": [1], "device": "cpu",
        "variants": "pytorch-fp32,onnxruntime-cpu,onnxruntime-cpu-int8",
        "warmup": 3.0, "duration": 20.0, "iterations": 20, "rounds": 4, "output": Path("runs/bench/cpu-int8"),
    },
    "cpu-openvino": {
        "model": ["sunet64"], "size": [(512, 512)], "batch": [1], "device": "cpu",
        "variants": "pytorch-fp32,onnxruntime-cpu,onnxruntime-cpu-int8,openvino-cpu,openvino-cpu-int8",
        "warmup": 3.0, "duration": 20.0, "iterations": 20, "rounds": 4, "output": Path("runs/bench/cpu-openvino"),
    },
}  # fmt: skip


@dataclass(frozen=True)
class Case:
    model: str  # the checkpoint's architecture, or a label
    checkpoint: Path
    batch: int
    size: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.batch, 3, *self.size)

    def gflops(self) -> float:
        return spec_gflops(ModelSpec.from_dict(read_checkpoint_info(self.checkpoint).metadata.model), self.shape)


@dataclass
class Row:
    variant: Variant
    runtime: Runtime
    artifact: Path
    memory: dict
    samples: Samples


def open_rows(case: Case, variants: list[Variant], args: argparse.Namespace, skipped: dict) -> list[Row]:
    """Build, open, activate and warm up every variant; record why any of them could not run."""
    batch = np.random.default_rng(0).standard_normal(case.shape, dtype=np.float32)
    rows = []
    for variant in variants:
        memory = DeviceMemory(variant.device)
        try:
            memory.start()
            runtime, path = open_variant(variant, case.checkpoint, args.workdir, case.shape, args.threads, args.engine)
            warm_up(runtime, batch, args.warmup)
        except Exception as exc:  # a row that cannot run is reported, not fatal to the others
            skipped[variant.name] = failure_reason(exc)
            continue
        memory_info = {**memory.stop(runtime), **host_memory()}
        rows.append(Row(variant, runtime, path, memory_info, Samples()))
        print(f"  warmed up {variant.name}", flush=True)
    return rows


def measure_case(case: Case, variants: list[Variant], args: argparse.Namespace) -> tuple[list[dict], dict, list]:
    """All rows of one (model, batch, size), timed in interleaved rounds, with one matrix-rate
    measurement per round; returns (rows, skipped, rate measurements)."""
    available, skipped = split_available(variants)
    rows = open_rows(case, available, args, skipped)
    if not rows:
        return [], skipped, []
    records, rates = time_rows(case, rows, args)
    return with_speedups(records, reference_name(args.device)), skipped, rates


def time_rows(case: Case, rows: list[Row], args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """Time opened, warmed-up rows in args.rounds interleaved rounds (one matrix-rate measurement each),
    then deactivate them; returns (report rows, rate measurements). benchmarks.select times its rows here too."""
    batch = np.random.default_rng(1).standard_normal(case.shape, dtype=np.float32)
    rates = []
    for _ in range(args.rounds):
        rates.append(measure_rates(args.device, args.threads))
        for row in rows:
            time_iterations(row.runtime, batch, row.samples, args.duration / args.rounds,
                            math.ceil(args.iterations / args.rounds))  # fmt: skip
    for row in rows:
        row.runtime.deactivate()
    gflops, best = case.gflops(), merge_best(rates)
    return [row_record(case, row, gflops, best) for row in rows], rates


def row_record(case: Case, row: Row, gflops: float, rates: dict[str, float]) -> dict:
    """One report row; `x_floor` is the median latency over the compute floor of the row's precision."""
    precision, summary = row.runtime.info.precision, row.samples.summary()
    floor = floor_ms(gflops, rates, precision)
    return {
        "model": case.model, "batch": case.batch, "size": list(case.size), "gflops": gflops,
        "variant": row.variant.name, "runtime": row.variant.runtime, "device": row.variant.device,
        "precision": precision, "options": row.variant.options.changed(),
        "artifact": str(row.artifact), "artifact_mib": row.artifact.stat().st_size / 2**20,
        **summary, "floor_ms": floor, "x_floor": summary["latency_ms"]["median"] / floor, "memory": row.memory,
        "samples_ms": {"total": row.samples.total_ms, **{k: v for k, v in row.samples.split_ms.items() if v}},
    }  # fmt: skip


def with_speedups(rows: list[dict], reference: str) -> list[dict]:
    """Add `speedup`: the reference row's median latency over each row's (None without a reference)."""
    ref = next((r for r in rows if r["variant"] == reference), None)
    for row in rows:
        row["speedup"] = ref["latency_ms"]["median"] / row["latency_ms"]["median"] if ref else None
    return rows


def cases(args: argparse.Namespace) -> list[Case]:
    checkpoints = [(Path(c), None) for c in args.checkpoints]
    checkpoints += [(random_checkpoint(m, args.workdir, output_stride=args.output_stride), m) for m in args.model]
    return [Case(label or path.stem, path, b, s) for path, label in checkpoints for b in args.batch for s in args.size]


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    variants = variants_for(args.device, args.variants.split(",") if args.variants else None)
    rows, skipped, rates = [], {}, []
    for case in cases(args):
        print(f"{case.model}: batch {case.batch}, {case.size[0]}x{case.size[1]}", flush=True)
        case_rows, case_skipped, case_rates = measure_case(case, variants, args)
        rows += case_rows
        skipped.update(case_skipped)
        rates += case_rates
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    floor = {"rates": merge_best(rates), "measurements": rates} if rates else {}
    return {"settings": settings, "rows": rows, "skipped": skipped, "floor": floor,
            "models": model_table() if args.flops else []}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("checkpoints", nargs="*", help="sunet-deploy .safetensors checkpoints to measure")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="cpu: SUNet-64 OS16 512x512 batch 1, CPU runtimes; cpu-int8: the same with ONNX Runtime "
                             "FP32 and INT8 only; cpu-openvino: ONNX Runtime and OpenVINO, FP32 and INT8")
    add_flag(parser, "--arch", dest="model", action="append", default=[],
             help="an architecture to measure with random weights (repeatable)")
    add_flag(parser, "--output-stride", help="output stride of --arch networks (default 16)")
    add_flag(parser, "--device", choices=("cpu", "cuda"), default="cpu")
    add_flag(parser, "--variants", help="comma-separated variant names (default: all of the device)")
    add_flag(parser, "--batch", nargs="+", default=[1], help="batch sizes to measure (default 1)")
    add_flag(parser, "--size", nargs="+", default=[(512, 512)], help="input sizes to measure (default 512x512)")
    add_flag(parser, "--warmup", default=2.0, help="warm-up seconds per row")
    add_flag(parser, "--duration", default=10.0, help="timed seconds per row, at least")
    add_flag(parser, "--min-iterations", dest="iterations", default=10, help="timed iterations per row, at least")
    add_flag(parser, "--rounds", default=1, help="interleave the rows in this many rounds")
    add_flag(parser, "--threads", default=os.cpu_count(), help="CPU threads for every runtime")
    add_flag(parser, "--engine")
    add_flag(parser, "--workdir", default=Path("runs/bench/work"), help="where artifacts are built")
    add_flag(parser, "--output", default=Path("runs/bench"), help="report folder")
    parser.add_argument("--no-flops", dest="flops", action="store_false", help="leave out the FLOPs/params table")
    add_renamed(parser, "--model", here={"--iterations": "--min-iterations"})
    args = parser.parse_args(argv)
    if args.preset:
        parser.set_defaults(**PRESETS[args.preset])
        args = parser.parse_args(argv)
    if not args.checkpoints and not args.model:
        parser.error("give checkpoints, --arch ARCH or --preset")
    if min(args.batch) < 1 or args.rounds < 1 or args.iterations < 1 or args.threads < 1:
        parser.error("--batch, --rounds, --min-iterations and --threads must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if not result["rows"]:
        print(nothing_measured(result["skipped"]), file=sys.stderr)
        return 2
    for path in write_reports(result, args.output, title="Latency"):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
