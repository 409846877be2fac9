"""`python -m benchmarks.output_stride`: the paper's output-stride claim, measured.

The SUNet paper says a model at output stride 16 trains and infers 2x faster than at OS8, and at
OS32 4x faster. For each model and output stride this measures, in PyTorch eager FP32 with random
weights: the forward FLOPs (benchmarks.harness.flops), the inference latency of one image (--size, batch 1,
no autograd), and the training step time (forward, cross-entropy, backward, SGD step) on a small
batch (--train-batch at --train-size). Output strides are interleaved round by round, as the
latency benchmark interleaves its rows, so a load that comes and goes hits all of them alike.

    python -m benchmarks.output_stride --output docs/bench          # output-stride.md and .json
    python -m benchmarks.output_stride --arch sunet64 --rounds 2 --infer-iterations 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from runtimes.stats import latency_summary
from sunet_deploy.cli import EXIT_STATUS_HELP, parse_size
from sunet_deploy.flags import add_flag, add_renamed
from sunet_deploy.models import ModelSpec, build_model

from .harness.env import environment, format_environment
from .harness.flops import spec_gflops
from .harness.report import save_report

MODELS = ("sunet64", "sunet7_128")
STRIDES = (8, 16, 32)
NUM_CLASSES = 21


def timed_ms(step: Callable[[], None], count: int) -> list[float]:
    """Milliseconds of each of `count` runs of `step`."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        step()
        times.append(1000 * (time.perf_counter() - start))
    return times


def inference_step(model: nn.Module, size: tuple[int, int]) -> Callable[[], None]:
    x = torch.randn(1, 3, *size)

    def step() -> None:
        with torch.inference_mode():
            model.eval()(x)

    return step


def training_step(model: nn.Module, batch: int, size: tuple[int, int]) -> Callable[[], None]:
    """One SGD step on a random batch: forward, cross-entropy on full-resolution logits, backward, update."""
    x = torch.randn(batch, 3, *size)
    target = torch.randint(0, NUM_CLASSES, (batch, *size))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.95, weight_decay=1e-4)

    def step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), target).backward()
        optimizer.step()

    return step


def measure_model(arch: str, args: argparse.Namespace) -> list[dict]:
    """One record per output stride: GFLOPs, inference and training-step latencies (ms, every sample)."""
    records, steps = [], []
    for stride in STRIDES:
        spec = ModelSpec(arch, num_classes=NUM_CLASSES, output_stride=stride)
        torch.manual_seed(0)
        model = build_model(spec)
        steps.append((inference_step(model, args.size), training_step(model, args.train_batch, args.train_size)))
        records.append({"model": arch, "output_stride": stride, "gflops": spec_gflops(spec, (1, 3, *args.size)),
                        "train_gflops_forward": spec_gflops(spec, (args.train_batch, 3, *args.train_size)),
                        "infer_ms": [], "train_ms": []})
    for infer, train in steps:  # warm-up: one of each
        infer(), train()
    for round_ in range(args.rounds):
        for record, (infer, train) in zip(records, steps):
            record["infer_ms"] += timed_ms(infer, args.infer_iterations)
            record["train_ms"] += timed_ms(train, args.train_iterations)
            print(f"  {arch} OS{record['output_stride']} round {round_ + 1}/{args.rounds}: infer "
                  f"{min(record['infer_ms']):.0f} ms, train step {min(record['train_ms']):.0f} ms (best so far)", flush=True)
    return [summarise(record, records[0]) for record in records]


def summarise(record: dict, os8: dict) -> dict:
    """Medians, and the OS8 record's medians over this one's (the speed-up the paper claims)."""
    infer, train = latency_summary(record["infer_ms"]), latency_summary(record["train_ms"])
    os8_infer, os8_train = (latency_summary(os8[k])["median"] for k in ("infer_ms", "train_ms"))
    return {**record, "infer": infer, "train": train, "infer_speedup_vs_os8": os8_infer / infer["median"],
            "train_speedup_vs_os8": os8_train / train["median"], "flops_ratio_vs_os8": os8["gflops"] / record["gflops"]}


CLAIMS = {8: "1x", 16: "2x", 32: "4x"}


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = ["| model | output stride | GFLOPs (1x3x{}x{}) | inference median (ms) | training step median (ms) | "
             "FLOPs OS8/OS | inference OS8/OS | training OS8/OS | paper |".format(*s["size"]), "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['output_stride']} | {r['gflops']:.1f} | {r['infer']['median']:.0f} | "
                     f"{r['train']['median']:.0f} | {r['flops_ratio_vs_os8']:.2f}x | {r['infer_speedup_vs_os8']:.2f}x | "
                     f"{r['train_speedup_vs_os8']:.2f}x | {CLAIMS[r['output_stride']]} |")
    how = (f"PyTorch eager FP32, random weights, {s['threads']} threads. Inference: batch 1 at {s['size'][0]}x{s['size'][1]}, "
           f"{s['rounds']} rounds x {s['infer_iterations']} iterations after one warm-up. Training step: forward, "
           f"cross-entropy, backward and SGD step on batch {s['train_batch']} at {s['train_size'][0]}x{s['train_size'][1]}, "
           f"{s['rounds']} rounds x {s['train_iterations']} steps after one warm-up. Output strides interleaved round by "
           "round. OS8/OS: the OS8 median over this row's (the speed-up of going from OS8 to this stride).")
    return "\n\n".join(["# Output stride: inference and training speed", "## Environment",
                        format_environment(result["environment"]), "## Results", "\n".join(lines), how]) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.output_stride", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flag(parser, "--arch", dest="model", action="append",
             help=f"SUNet architectures to measure (repeatable; default: {' and '.join(MODELS)})")
    add_flag(parser, "--size", default=(512, 512), help="inference size (512x512)")
    parser.add_argument("--train-size", type=parse_size, default=(512, 512), metavar="HxW",
                        help="training crop size (default 512x512, the paper's)")
    parser.add_argument("--train-batch", type=int, default=2, help="training batch (default 2)")
    add_flag(parser, "--rounds", default=2, help="rounds over the output strides (default 2)")
    parser.add_argument("--infer-iterations", type=int, default=3, help="inference iterations per round (default 3)")
    parser.add_argument("--train-iterations", type=int, default=1, help="training steps per round (default 1)")
    add_flag(parser, "--threads", default=os.cpu_count(), help="torch threads (default: all cores)")
    add_flag(parser, "--output", default=Path("runs/bench"), help="folder for output-stride.md/.json")
    add_renamed(parser, "--model")
    args = parser.parse_args(argv)
    if min(args.train_batch, args.rounds, args.infer_iterations, args.train_iterations, args.threads) < 1:
        parser.error("--train-batch, --rounds, --infer-iterations, --train-iterations and --threads must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for arch in args.model or MODELS:
        print(f"{arch}: output strides {', '.join(map(str, STRIDES))}", flush=True)
        rows += measure_model(arch, args)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result = {"environment": environment(args.threads), "settings": settings, "rows": rows}
    save_report(result, markdown(result), args.output, "output-stride")
    return 0


if __name__ == "__main__":
    sys.exit(main())
