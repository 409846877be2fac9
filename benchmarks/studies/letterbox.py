"""`python -m benchmarks.studies.letterbox CHECKPOINT --size 96x160 256x256`: what letterboxing costs.

A fixed-size artifact (a `--static` ONNX model, an AOTInductor package, an engine whose profile
excludes the image) gets every image letterboxed by `runtimes.predict`: scaled with its aspect
ratio kept to fit the compiled size, padded with the mean colour, and the logits mapped back to
the original size, with --letterbox; by default it runs windows of the artifact's size instead
(sunet_deploy.protocol, a quarter overlap, the image at its own scale, padded where smaller).
This measures both: each size's static ONNX export against the dynamic one (the image at its own
size) on the checkpoint's validation set, as mIoU against the labels and as pixel agreement with
the dynamic model's masks. Writes letterbox.md and .json.

A study, not maintained: it reproduces docs/bench/protocol/letterbox.md (read by docs/inference.md
and docs/export.md). It runs the checkpoint's recorded validation set (no dataset flags) and each
artifact's own windows (sunet_deploy.protocol.artifact_protocol, no protocol flags).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sunet_deploy.progress import progress

from export.onnx import export_onnx
from runtimes import open_runtime
from runtimes.predict import Predictor
from sunet_deploy.artifact import read_checkpoint_info
from sunet_deploy.cli import EXIT_OK, EXIT_STATUS_HELP
from sunet_deploy.flags import add_flag
from sunet_deploy.data import validation_spec
from sunet_deploy.formats import OnnxRecipe
from sunet_deploy.metrics import ConfusionMatrix
from sunet_deploy.protocol import artifact_protocol

from ..harness.env import environment, format_environment
from ..harness.report import save_report


def masks_of(model: Path, dataset, limit: int, tiled: bool = False) -> list:
    with open_runtime(model) as runtime:
        predictor = Predictor(runtime, artifact_protocol(runtime.info) if tiled else None)
        return [predictor.mask(dataset[i][0]) for i in progress(range(limit), desc=model.name, leave=False)]


def score(masks: list, dataset, num_classes: int) -> float:
    confusion = ConfusionMatrix(num_classes)
    for index, mask in enumerate(masks):
        confusion.update(mask, dataset[index][1])
    return 100 * confusion.scores().miou


def run(args: argparse.Namespace) -> dict:
    meta = read_checkpoint_info(args.checkpoint).metadata
    spec = validation_spec(meta)
    if spec is None:
        raise ValueError(f"{args.checkpoint} records no validation set (train it with this version)")
    dataset = spec.build()
    limit = min(args.limit or len(dataset), len(dataset))
    args.workdir.mkdir(parents=True, exist_ok=True)
    native = masks_of(export_onnx(args.checkpoint, args.workdir / "dynamic.onnx").path, dataset, limit)
    rows = [{"size": "own size", "mode": "whole", "miou": score(native, dataset, meta.num_classes), "agreement": 100.0}]
    for h, w in args.size:
        static = export_onnx(args.checkpoint, args.workdir / f"static_{h}x{w}.onnx", OnnxRecipe(static=(h, w))).path
        for mode, tiled in (("letterbox", False), ("windows", True)):
            masks = masks_of(static, dataset, limit, tiled)
            agree = sum(int((m == n).sum()) for m, n in zip(masks, native)) / sum(m.size for m in native)
            rows.append({"size": f"{h}x{w}", "mode": mode, "miou": score(masks, dataset, meta.num_classes),
                         "agreement": 100 * agree})  # fmt: skip
    for row in rows:
        row["delta_miou"] = row["miou"] - rows[0]["miou"]
    return {"environment": environment(), "checkpoint": str(args.checkpoint), "dataset": spec.describe(),
            "images": limit, "rows": rows}  # fmt: skip


def markdown(result: dict) -> str:
    table = ["| input | images run | mIoU | delta mIoU (points) | agreement with own size (%) |", "|---|---|---|---|---|"]
    table += [f"| {r['size']} | {r['mode']} | {r['miou']:.3f} | {r['delta_miou']:+.3f} | {r['agreement']:.3f} |"
              for r in result["rows"]]
    return "\n\n".join([
        "# Letterboxing or windows for a fixed input size", "## Environment", format_environment(result["environment"]),
        "## Results", f"checkpoint `{result['checkpoint']}`, {result['dataset']}, first {result['images']} images; "
        "ONNX Runtime CPU, FP32. Each fixed size is a `--static` export; images are letterboxed into it "
        "(`runtimes.predict --letterbox`) or run in windows of its size (`runtimes.predict`'s default).", "\n".join(table),
    ]) + "\n"  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.letterbox", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a trained checkpoint that records its validation set")
    add_flag(parser, "--size", nargs="+", required=True, help="fixed sizes to try")
    add_flag(parser, "--limit", default=0, help="the first N validation images (0: all)")
    add_flag(parser, "--workdir", default=Path("runs/bench/letterbox"), help="where exports go")
    add_flag(parser, "--output", default=Path("runs/bench/letterbox"), help="report folder")
    args = parser.parse_args(argv)
    result = run(args)
    save_report(result, markdown(result), args.output, "letterbox")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
