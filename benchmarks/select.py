"""`python -m benchmarks.select CHECKPOINT -o deploy/`: the fastest artifact proven to keep the accuracy, here.

    python -m benchmarks.select runs/demo/best.safetensors -o deploy/
    python -m benchmarks.select ckpt.safetensors -o deploy/ --size 512x512 --threads 2 --max-drop 0.2 --triton
    python -m benchmarks.select ckpt.safetensors -o deploy/ --tile 512 --strategy latency-budget=250

1. Builds every candidate this machine can run (benchmarks.harness.variants for --device plus the ones only
   selection builds: torch.compile, INT8 with int8 activations for CPU runtimes; --artifact adds existing
   files, each with every runtime that opens it), cached by recipe in --workdir as the latency and parity
   harnesses cache them. One that cannot be built or run here is listed with the reason.
2. Gates each by mIoU parity against PyTorch FP32 on the checkpoint's recorded validation set (the first
   --limit images; the dataset flags choose another), under the protocol given (--tile/--scales/--flip,
   as predict takes them; each image whole without them), with its precision's tolerance
   (benchmarks.parity) or --max-drop / --max-class-drop. Gate results are cached by artifact hash,
   options, images and protocol.
3. Times the candidates that passed with the latency harness at --batch x 3 x --size (interleaved
   rounds, percentiles, peak memory, x compute floor); --measure-rejected times the others too (shown,
   never chosen).
4. Picks by --strategy (the rule and its tie rule are printed in the report) and writes OUTDIR: the
   chosen artifact (model.*), selection.md, selection.json (one entry per candidate), selection.png
   (latency against mIoU drop, the choice marked), and with --triton a Triton repository for it. An
   existing non-empty OUTDIR is refused without --overwrite.

A second run reuses every cached artifact and gate result and says so; --rebuild rebuilds them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from runtimes import open_runtime
from sunet_deploy.artifact import ArtifactError, read_checkpoint_info
from sunet_deploy.cli import EXIT_FAILED, EXIT_OK, EXIT_STATUS_HELP, EXIT_USAGE
from sunet_deploy.data import DatasetError
from sunet_deploy.data.selection import add_dataset_flags
from sunet_deploy.fileio import file_sha256
from sunet_deploy.flags import add_flag
from sunet_deploy.formats import AotiRecipe, OnnxRecipe
from sunet_deploy.options import digest
from sunet_deploy.protocol import ProtocolError, add_protocol_flags, protocol_from_args

from .harness.artifacts import artifact_for, cached_path, failure_reason
from .latency import Case, Row, time_rows
from .harness.measure import DeviceMemory, Samples, host_memory, warm_up
from .parity import TOLERANCES, judge, protocol_obstacle, run_parity, validation_set
from .harness.report import write_json
from .harness.selection_report import markdown, protocol_flags, write_deploy
from .harness.selection import Candidate, Gate, Strategy, candidate_variants, given_candidates
from .harness.variants import with_threads

GATE_CACHE = "gates"


def build(candidate: Candidate, args: argparse.Namespace, shape: tuple[int, int, int, int]) -> None:
    """The candidate's artifact from the cache or built now (--rebuild: rebuilt); sets path, cached, build_s."""
    variant = candidate.variant
    if candidate.given is not None:
        candidate.path, candidate.cached, candidate.build_s = candidate.given, None, 0.0
        return
    if variant.recipe is None:
        candidate.path, candidate.cached, candidate.build_s = args.checkpoint, None, 0.0
        return
    expected = expected_path(candidate, args, shape)
    if args.rebuild and expected is not None and expected.is_file() and expected not in args.rebuilt:
        expected.unlink()
        args.rebuilt.add(expected)
    if expected in args.built_now:  # another candidate built this file in this run
        candidate.path, candidate.cached, candidate.build_s = expected, False, 0.0
        candidate.shared_with = args.built_now[expected]
        return
    cached = expected is not None and expected.is_file()
    start = time.perf_counter()
    if not cached:
        print(f"  building {candidate.name} ...", flush=True)
    candidate.path = artifact_for(variant, args.checkpoint, args.workdir, shape)
    candidate.cached, candidate.build_s = cached, time.perf_counter() - start
    if not cached:
        args.built_now[candidate.path] = candidate.name
    print(f"  {candidate.name}: {'cached' if cached else f'built in {candidate.build_s:.1f} s'}: {candidate.path}",
          flush=True)


def expected_path(candidate: Candidate, args: argparse.Namespace, shape: tuple[int, int, int, int]) -> Path | None:
    """Where artifact_for caches this variant's file (None for an engine, whose ONNX graph is cached first)."""
    recipe, (n, _, h, w) = candidate.variant.recipe, shape
    if isinstance(recipe, AotiRecipe):
        recipe = dataclasses.replace(recipe, size=(h, w), batch=n)
    return cached_path(args.checkpoint, args.workdir, recipe) if isinstance(recipe, (OnnxRecipe, AotiRecipe)) else None


def gate_key(candidate: Candidate, args: argparse.Namespace, images: str, protocol) -> str:
    source = file_sha256(candidate.path) if candidate.path != args.checkpoint else args.checkpoint_sha
    return digest(args.checkpoint_sha, source, candidate.options, images, protocol.to_dict() if protocol else None)


def gate_all(candidates: list[Candidate], args: argparse.Namespace, meta, dataset, images: str, protocol) -> None:
    """Parity of every built candidate against PyTorch FP32, from the gate cache or one pass over the images."""
    cache = args.workdir / GATE_CACHE
    todo = {}
    for c in candidates:
        c.key = gate_key(c, args, images, protocol)
        stored = cache / f"{c.key}.json"
        if stored.is_file() and not args.rebuild:
            data = json.loads(stored.read_text())
            c.gate, c.precision, c.gate_cached = data["gate"], data["precision"], True
        else:
            todo[c.name] = c
    if not todo:
        return
    reference = next(c for c in candidates if c.reference)
    runtimes = {}
    for c in [reference, *[c for c in todo.values() if c is not reference]]:
        try:
            rt = open_runtime(c.path, with_threads(c.options, args.threads))
            rt.activate()
        except Exception as exc:  # a candidate that cannot run here is reported, not fatal to the others
            c.reason = f"cannot run here: {failure_reason(exc)}"
            continue
        obstacle = protocol_obstacle(rt) if protocol is not None else fixed_size_obstacle(rt, dataset)
        if obstacle:
            c.reason, c.precision = f"cannot be gated: {obstacle}", rt.info.precision
            rt.deactivate()
            continue
        runtimes[c.name], c.precision = rt, rt.info.precision
    if reference.name not in runtimes:
        for c in todo.values():
            c.reason = c.reason or f"not gated: the reference {reference.name} cannot run ({reference.reason})"
        return
    gated = [name for name in runtimes if name != reference.name]
    print(f"gating {len(gated)} candidate(s) against {reference.name} on {images}", flush=True)
    stats = run_parity(runtimes, reference.name, dataset, meta.num_classes, protocol)
    for rt in runtimes.values():
        rt.deactivate()
    cache.mkdir(parents=True, exist_ok=True)
    for name, s in stats.items():
        c = todo.get(name) or reference
        c.gate, c.gate_cached = judge(s, stats[reference.name], TOLERANCES[c.precision], meta.classes), False
        write_json({"gate": c.gate, "precision": c.precision}, cache / f"{c.key}.json")


def fixed_size_obstacle(runtime, dataset) -> str | None:
    """Why a fixed-shape artifact cannot run the validation images whole (None: it can)."""
    size = runtime.info.fixed_size
    if size is None and runtime.info.accepts((1, 3, 1, 1)):
        return None
    sizes = {tuple(dataset[i][0].shape[:2]) for i in range(min(len(dataset), 8))}
    if runtime.info.accepts((1, 3, *next(iter(sizes)))) and len(sizes) == 1:
        return None
    return (f"takes {runtime.info.describe_shapes()} and the validation images are "
            f"{', '.join(f'{h}x{w}' for h, w in sorted(sizes))} at batch 1 (give --size/--batch that match them, or --tile)")


def measure(candidates: list[Candidate], args: argparse.Namespace, shape: tuple[int, int, int, int]) -> list:
    """Time the candidates with the latency harness, interleaved; returns the matrix-rate measurements."""
    batch = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    case = Case(args.checkpoint.stem, args.checkpoint, shape[0], shape[2:])
    rows = []
    for c in candidates:
        memory = DeviceMemory(c.variant.device)
        try:
            memory.start()
            rt = open_runtime(c.path, with_threads(c.options, args.threads))
            rt.activate()
            warm_up(rt, batch, args.warmup)
        except Exception as exc:  # a row that cannot run at this shape is reported, not fatal to the others
            c.reason = (c.reason + "; " if c.reason else "") + f"not timed: {failure_reason(exc)}"
            c.passed = False
            continue
        rows.append((c, Row(c.variant, rt, c.path, {**memory.stop(rt), **host_memory()}, Samples())))
        print(f"  warmed up {c.name}", flush=True)
    if not rows:
        return []
    records, rates = time_rows(case, [row for _, row in rows], args)
    for (c, _), record in zip(rows, records):
        c.row = record
    return rates


def judge_all(candidates: list[Candidate], gate: Gate) -> None:
    for c in candidates:
        if c.gate is None:
            c.passed = False
            continue
        if c.reference:
            c.passed, c.reason = True, "the reference (PyTorch FP32)"
            continue
        failures = gate.failures(c.gate, c.precision)
        c.passed, c.reason = not failures, "; ".join(failures) or "within the gate"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.select", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("checkpoint", type=Path, help="sunet-deploy .safetensors checkpoint (trained)")
    add_flag(parser, "--output", short="-o", required=True, help="the deploy folder to write")
    add_flag(parser, "--size", help="deployment input size (default: the validation images' size, else 512x512)")
    add_flag(parser, "--batch", default=1, help="deployment batch: images per inference call")
    add_flag(parser, "--device", choices=("cpu", "cuda"), default="cpu")
    add_flag(parser, "--threads", default=os.cpu_count(), help="CPU threads for every runtime")
    parser.add_argument("--strategy", default="latency", help="latency (default), throughput (images/s at --batch) "
                        "or latency-budget=MS (most accurate under MS, then fastest)")
    parser.add_argument("--tie", type=float, default=3.0, metavar="PERCENT", help="latency/throughput within this "
                        "share of the best tie; ties go to the higher precision (default 3)")
    parser.add_argument("--max-drop", type=float, metavar="POINTS", help="admit an mIoU drop of at most POINTS for "
                        "every precision (0: no drop at all; default: each precision's tolerance)")
    parser.add_argument("--max-class-drop", type=float, metavar="POINTS", help="also the worst class's IoU drop")
    add_flag(parser, "--limit", default=50, help="gate on the first N validation images (0: all)")
    parser.add_argument("--only", help="comma-separated candidate names (default: every one of --device)")
    parser.add_argument("--exclude", default="", help="comma-separated candidate names to leave out")
    add_flag(parser, "--artifact", metavar="FILE", help="also consider this existing .onnx/.pt2/.engine file "
             "(repeatable)")
    parser.add_argument("--measure-rejected", action="store_true", help="time rejected candidates too (never chosen)")
    parser.add_argument("--triton", action="store_true", help="also write a Triton model repository for the winner")
    add_flag(parser, "--warmup", default=1.0, help="warm-up seconds per candidate")
    add_flag(parser, "--duration", default=6.0, help="timed seconds per candidate")
    add_flag(parser, "--min-iterations", dest="iterations", default=10, help="timed iterations per candidate, at least")
    add_flag(parser, "--rounds", default=3, help="interleave the candidates in this many rounds")
    add_flag(parser, "--workdir", default=Path("runs/bench/work"), help="artifact and gate cache")
    parser.add_argument("--rebuild", action="store_true", help="rebuild cached artifacts and gate results (the "
                        "cache is kept otherwise; --overwrite is about the deploy folder)")
    add_flag(parser, "--overwrite", help="replace an earlier selection in OUTDIR")
    add_dataset_flags(parser, "the images the gate runs: the validation set the checkpoint records, changed by "
                      "these flags")
    add_protocol_flags(parser, batch_is_images=True)
    args = parser.parse_args(argv)
    if args.limit < 0 or args.threads < 1 or args.batch < 1 or args.rounds < 1:
        parser.error("--limit must be 0 or positive; --threads, --batch and --rounds positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    try:
        if args.output.exists() and any(args.output.iterdir()) and not args.overwrite:
            raise ValueError(f"{args.output} exists and is not empty (an earlier selection?); choose another -o "
                             "folder, or pass --overwrite to replace it")
        strategy = Strategy.parse(args.strategy, args.tie / 100)
        gate = Gate(args.max_drop, args.max_class_drop)
        meta = read_checkpoint_info(args.checkpoint).metadata
        dataset, spec = validation_set(args, meta)
        protocol = protocol_from_args(args, read_checkpoint_info(args.checkpoint))
        split = lambda text: [n for n in (text or "").split(",") if n]  # noqa: E731
        candidates = candidate_variants(args.device, split(args.only) or None, split(args.exclude))
        candidates += given_candidates([Path(a) for a in args.artifact], args.device)
    except (ArtifactError, DatasetError, ProtocolError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    size = args.size or spec.size or (512, 512)
    shape = (args.batch, 3, *size)
    args.checkpoint_sha, args.rebuilt, args.built_now = file_sha256(args.checkpoint), set(), {}
    args.workdir.mkdir(parents=True, exist_ok=True)
    images = f"{spec.describe()}, first {len(dataset)} images"
    print(f"{len(candidates)} candidate(s) for {args.device}, deployment shape {'x'.join(map(str, shape))}", flush=True)
    for c in candidates:
        c.precision = c.options.precision or getattr(c.variant.recipe, "precision", None) or "fp32"
        if c.reason:  # left out by --only/--exclude
            continue
        reason = c.variant.availability()
        if reason:
            c.reason = f"cannot run here: {reason}"
            continue
        try:
            build(c, args, shape)
        except Exception as exc:  # one candidate that cannot be built is reported, not fatal to the others
            c.reason = f"cannot be built: {failure_reason(exc)}"
    built = [c for c in candidates if c.path is not None and not c.reason]
    gate_all(built, args, meta, dataset, images, protocol)
    judge_all(candidates, gate)
    timed = [c for c in candidates if c.passed or (args.measure_rejected and c.gate is not None)]
    print(f"timing {len(timed)} candidate(s) at {'x'.join(map(str, shape))}", flush=True)
    rates = measure(timed, args, shape)
    chosen, why = strategy.choose([c for c in candidates if c.passed])
    if chosen is not None:
        chosen.chosen = True
    result = {
        "checkpoint": str(args.checkpoint), "checkpoint_sha256": args.checkpoint_sha, "device": args.device,
        "shape": list(shape), "threads": args.threads, "images": images, "gate": gate.describe(),
        "strategy": strategy.describe(), "protocol": protocol.describe() if protocol else "each image whole",
        "protocol_flags": protocol_flags(args), "chosen": chosen.name if chosen else None, "why": why,
        "candidates": [c.to_dict() for c in candidates], "rates": rates,
        "cache": {"artifacts_reused": len({c.path for c in candidates if c.cached is True}),
                  "artifacts_built": len({c.path for c in candidates if c.cached is False}),
                  "gates_reused": sum(c.gate_cached is True for c in candidates),
                  "gates_measured": sum(c.gate_cached is False for c in candidates)},
    }  # fmt: skip
    result["seconds"] = time.perf_counter() - started
    for path in write_deploy(result, chosen, args):
        print(f"wrote {path}")
    print(markdown(result))
    return EXIT_OK if chosen else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
