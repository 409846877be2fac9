"""Served models against PyTorch FP32 on the demo's validation split, judged by benchmarks.parity itself.

    python docs/bench/serve/served_parity.py runs/demo/best.safetensors \\
        triton://127.0.0.1:8000/sunet triton+grpc://127.0.0.1:8001/sunet --output docs/bench/serve

benchmarks.parity builds its runtimes from a checkpoint; this script gives its `run_parity` and
`judge` the triton:// runtimes of a model served from the same checkpoint instead (one image per
request), and writes parity.md and parity.json in benchmarks.parity's format. Validation split: the
demo's, 200 synthetic 128x128 images (seed 0). Exit status 1 when a served model is outside the
FP32 tolerance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.env import environment
from benchmarks.parity import TOLERANCES, judge, markdown, run_parity
from benchmarks.report import write_json
from runtimes import open_runtime
from sunet_deploy.artifact import read_checkpoint_info
from sunet_deploy.data import build_dataset

REFERENCE = "pytorch-fp32"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="the checkpoint the served models were exported from")
    parser.add_argument("uris", nargs="+", help="triton:// or triton+grpc:// URIs of the served models")
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--output", type=Path, default=Path("runs/parity-served"))
    args = parser.parse_args(argv)
    meta = read_checkpoint_info(args.checkpoint).metadata
    dataset = build_dataset("synthetic", split="val", num_samples=args.num_samples, size=(128, 128),
                            num_classes=meta.num_classes, seed=0)
    runtimes = {REFERENCE: open_runtime(args.checkpoint), **{uri: open_runtime(uri) for uri in args.uris}}
    for runtime in runtimes.values():
        runtime.activate()
    stats = run_parity(runtimes, REFERENCE, dataset, meta.num_classes)
    records = {name: {"precision": rt.info.precision,
                      **judge(stats[name], stats[REFERENCE], TOLERANCES[rt.info.precision], meta.classes)}
               for name, rt in runtimes.items() if name != REFERENCE}  # fmt: skip
    result = {"environment": environment(), "checkpoint": str(args.checkpoint), "samples": len(dataset),
              "dataset": "synthetic (val)", "reference_miou": 100 * stats[REFERENCE].confusion.scores().miou,
              "runtimes": records, "skipped": {}}  # fmt: skip
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "parity.md").write_text(markdown(result))
    write_json(result, args.output / "parity.json")
    print(markdown(result))
    return 0 if all(r["passed"] for r in records.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
