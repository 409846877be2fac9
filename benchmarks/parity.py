"""`python -m benchmarks.parity CHECKPOINT`: every runtime's masks against PyTorch eager FP32.

    python -m benchmarks.parity runs/demo/best.safetensors          # the validation set training recorded
    python -m benchmarks.parity ckpt.safetensors --dataset voc --data-root VOCdevkit/VOC2012 --limit 0
    python -m benchmarks.parity ckpt.safetensors --device cuda --max-delta-miou fp16=0.2
    python -m benchmarks.parity ckpt.safetensors --artifact model_int8.onnx --artifact triton://127.0.0.1:8000/sunet

The images are the checkpoint's own validation set, as training recorded it (the first --limit of
them); the dataset flags (as train.evaluate's) choose another one with the same classes. Each runtime is judged
by the precision its artifact reports.

--artifact checks artifacts that exist already (repeatable): an .onnx, .pt2 or .engine/.plan file,
or a served model, triton://HOST:PORT/MODEL or triton+grpc://HOST:PORT/MODEL (a served image
model is sent each image as a PNG and compared by its masks). Each must come from CHECKPOINT
(the source hash it records) and is opened with its runtime's defaults on --device. With
--artifact, no other runtime is built unless --variants names it.

With --multi-scale every runtime runs the inference protocol (sunet_deploy.tiling: by default the
paper's, as `train.evaluate --multi-scale` runs it: scales 0.5-1.25 of a 512 short side, flips, 512
windows at stride 342; --scales/--base-size/--flip/--tile/--tile-overlap change it) and is judged
against PyTorch FP32 under the same protocol, with the same tolerances (no logit errors then: the
protocol's output is a mask).

Per runtime: mIoU against the labels, its delta to PyTorch FP32 (points), per-class IoU deltas,
pixel-label agreement with the PyTorch FP32 masks, and max/mean |logit difference|. The exit
status is 1 when any runtime is outside its tolerance (FP32: |delta mIoU| <= 0.05 points and
agreement >= 99.9 %; FP16/BF16: |delta mIoU| <= 0.3 points), 2 when nothing could be compared.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runtimes import Runtime, RuntimeUnavailable, open_runtime, options_for, runtime_for
from sunet_deploy.artifact import ArtifactError, read_checkpoint_info
from sunet_deploy.cli import EXIT_FAILED, EXIT_OK, EXIT_STATUS_HELP, EXIT_USAGE
from sunet_deploy.data import DatasetError, DatasetSpec
from sunet_deploy.data.selection import DatasetChoice, add_dataset_flags, check_classes, evaluation_spec
from sunet_deploy.fileio import file_sha256
from sunet_deploy.flags import add_flag
from sunet_deploy.metadata import ModelMetadata
from sunet_deploy.metrics import ConfusionMatrix
from sunet_deploy.pipeline.masks import output_to_mask
from sunet_deploy.pipeline.normalize import Normalization
from sunet_deploy.progress import progress
from sunet_deploy.protocol import Protocol, add_protocol_flags, protocol_asked, protocol_from_args
from sunet_deploy.tiling import InferModel, segment
from sunet_deploy.tolerance import PARITY as TOLERANCES
from sunet_deploy.tolerance import Tolerance

from .harness.artifacts import failure_reason, open_variant
from .harness.env import environment, format_environment
from .harness.report import nothing_measured, save_report, skipped_md
from .harness.variants import reference_name, split_available, variants_for, with_threads


@dataclass
class ParityStats:
    """What one runtime accumulates over a dataset."""

    confusion: ConfusionMatrix
    agree: int = 0
    pixels: int = 0
    max_abs_logit: float = 0.0
    sum_abs_logit: float = 0.0
    logit_count: int = 0

    def update(self, mask: np.ndarray, target: np.ndarray, reference_mask: np.ndarray,
               logits: np.ndarray | None = None, reference_logits: np.ndarray | None = None) -> None:  # fmt: skip
        self.confusion.update(mask, target)
        self.agree += int((mask == reference_mask).sum())
        self.pixels += mask.size
        if logits is not None and reference_logits is not None:
            diff = np.abs(logits.astype(np.float64) - reference_logits)
            self.max_abs_logit = max(self.max_abs_logit, float(diff.max()))
            self.sum_abs_logit += float(diff.sum())
            self.logit_count += diff.size


def judge(stats: ParityStats, reference: ParityStats, tolerance: Tolerance, class_names: list[str]) -> dict:
    """The parity record of one runtime against the reference, with `passed` and the failed checks."""
    scores, ref_scores = stats.confusion.scores(), reference.confusion.scores()
    delta = 100 * (scores.miou - ref_scores.miou)
    agreement = 100 * stats.agree / stats.pixels if stats.pixels else math.nan
    failures = []
    if not abs(delta) <= tolerance.max_delta_miou:
        failures.append(f"|delta mIoU| {abs(delta):.3f} > {tolerance.max_delta_miou} points")
    if tolerance.min_agreement is not None and not agreement >= tolerance.min_agreement:
        failures.append(f"agreement {agreement:.3f} % < {tolerance.min_agreement} %")
    class_deltas = {name: None if math.isnan(d) else 100 * float(d)
                    for name, d in zip(class_names, scores.iou - ref_scores.iou)}  # fmt: skip
    return {
        "miou": 100 * scores.miou, "delta_miou": delta, "class_iou_delta": class_deltas,
        "agreement": agreement, "max_abs_logit_error": stats.max_abs_logit if stats.logit_count else None,
        "mean_abs_logit_error": stats.sum_abs_logit / stats.logit_count if stats.logit_count else None,
        "tolerance": {"max_delta_miou": tolerance.max_delta_miou, "min_agreement": tolerance.min_agreement},
        "passed": not failures, "failures": failures,
    }  # fmt: skip


def run_parity(runtimes: dict[str, Runtime], reference: str, dataset, num_classes: int,
               protocol: Protocol | None = None) -> dict[str, ParityStats]:  # fmt: skip
    """Run every runtime on every sample, one image at a time; the reference's masks and logits are the gold."""
    if protocol is not None:
        return _run_protocol_parity(runtimes, reference, dataset, num_classes, protocol)
    normalize = Normalization.from_metadata(runtimes[reference].metadata)
    stats = {name: ParityStats(ConfusionMatrix(num_classes)) for name in runtimes}
    for index in progress(range(len(dataset)), desc="parity", unit="image", leave=False):
        image, target = dataset[index]
        batch, geometries = normalize(image)
        outputs = {name: rt.infer(batch) for name, rt in runtimes.items() if not rt.takes_images}
        ref_out = outputs[reference]
        ref_mask = output_to_mask(ref_out, runtimes[reference].output_kind, geometries)[0]
        for name, rt in runtimes.items():
            if rt.takes_images:  # a served image model: masks only
                stats[name].update(rt.masks([image])[0], target, ref_mask)
                continue
            logits = outputs[name] if rt.output_kind == "logits" and outputs[name].shape == ref_out.shape else None
            mask = output_to_mask(outputs[name], rt.output_kind, geometries)[0]
            stats[name].update(mask, target, ref_mask, logits, ref_out)
    return stats


def _run_protocol_parity(runtimes: dict[str, Runtime], reference: str, dataset, num_classes: int,
                         protocol: Protocol) -> dict[str, ParityStats]:  # fmt: skip
    """run_parity under the protocol: masks only, every runtime through the same engine."""
    engines = {name: InferModel.for_uint8(rt.infer, rt.output_kind, num_classes, rt.metadata.mean, rt.metadata.std)
               for name, rt in runtimes.items()}  # fmt: skip
    stats = {name: ParityStats(ConfusionMatrix(num_classes)) for name in runtimes}
    for index in progress(range(len(dataset)), desc="parity (protocol)", unit="image", leave=False):
        image, target = dataset[index]
        masks = {name: segment(image, engine, protocol) for name, engine in engines.items()}
        for name in runtimes:
            stats[name].update(masks[name], target, masks[reference])
    return stats


def protocol_obstacle(runtime: Runtime) -> str | None:
    """Why a runtime cannot be compared under the protocol (None: it can)."""
    if runtime.takes_images or runtime.info.fixed_size:
        return "runs one input size or whole encoded images; the protocol's views and windows vary"
    if runtime.output_kind == "labels":
        return ("outputs labels: under the protocol they vote one-hot instead of averaging probabilities, a different "
                "protocol (measured outside the FP32 tolerance on the demo model, docs/inference.md)")
    return None


def validation_set(args: argparse.Namespace, meta: ModelMetadata) -> tuple[Sequence, DatasetSpec]:
    """The checkpoint's recorded validation set (or the one the flags choose), its first --limit images."""
    spec, note = evaluation_spec(DatasetChoice.from_args(args), meta)
    if note:
        print(f"note: {args.checkpoint} {note}", file=sys.stderr)
    dataset = spec.build()
    check_classes(list(dataset.classes), spec, meta)
    count = len(dataset) if args.limit == 0 else min(args.limit, len(dataset))
    return [dataset[i] for i in range(count)] if count < len(dataset) else dataset, spec


def open_runtimes(args: argparse.Namespace, shape: tuple[int, int, int, int] | None) -> tuple[dict, dict]:
    """(runtimes by variant name, skipped {name: reason})."""
    names = args.variants.split(",") if args.variants else [reference_name(args.device)] if args.artifact else None
    available, skipped = split_available(variants_for(args.device, names))
    opened = {}
    for variant in available:
        if variant.format == "aoti" and (shape is None or protocol_asked(args)):
            skipped[variant.name] = ("an AOTInductor package has one input size; "
                                     + ("the protocol's views and windows vary" if protocol_asked(args) else "this dataset's images vary"))
            continue
        try:
            opened[variant.name], _ = open_variant(variant, args.checkpoint, args.workdir, shape or (1, 3, 512, 512),
                                                   args.threads, args.engine)  # fmt: skip
        except Exception as exc:  # a runtime that cannot run is reported, not fatal to the others
            skipped[variant.name] = failure_reason(exc)
    return opened, skipped


def open_artifacts(args: argparse.Namespace, meta: ModelMetadata, shape: tuple[int, int, int, int] | None) -> dict:
    """The --artifact runtimes by their path or URI, active; raises ArtifactError for one that cannot be compared."""
    sha256 = file_sha256(args.checkpoint)
    opened = {}
    for path in dict.fromkeys(args.artifact):
        runtime = open_runtime(path, artifact_options(path, args.device, args.threads))
        info = runtime.info
        if info.source_sha256 and info.source_sha256 != sha256:
            raise ArtifactError(path, f"was exported from another checkpoint (SHA-256 {info.source_sha256[:12]}...), "
                                f"not from {args.checkpoint}")
        if info.metadata.classes != meta.classes:
            raise ArtifactError(path, f"has other classes than {args.checkpoint}")
        low, high = info.shape_bounds()
        any_size = low[2:] == (1, 1) and high[2:] == (None, None)
        if not runtime.takes_images and not (info.accepts(shape) if shape else any_size):
            sizes = "of the dataset vary" if shape is None else f"are {shape[2]}x{shape[3]}"
            raise ArtifactError(path, f"takes {info.describe_shapes()}, and the images {sizes}")
        runtime.activate()
        opened[path] = runtime
    return opened


def artifact_options(path: str, device: str, threads: int | None):
    """The defaults of the runtime that opens `path`, on `device`, with `threads` where it takes them."""
    on_device = {"onnxruntime": {"provider": device}, "aoti": {"device": device}, "pytorch": {"device": device}}
    return with_threads(options_for(path, **on_device.get(runtime_for(path), {})), threads)


def tolerances(overrides: list[str]) -> dict[str, Tolerance]:
    """TOLERANCES with `PRECISION=POINTS` overrides of the mIoU delta."""
    result = dict(TOLERANCES)
    for item in overrides:
        precision, _, value = item.partition("=")
        if precision not in result:
            raise ValueError(f"unknown precision {precision!r} in {item!r}; known: {', '.join(result)}")
        result[precision] = dataclasses.replace(result[precision], max_delta_miou=float(value))
    return result


PARITY_COLUMNS = ("runtime", "precision", "mIoU", "delta mIoU (points)", "agreement (%)", "max abs logit error",
                  "mean abs logit error", "worst class IoU delta (points)", "pass")  # fmt: skip


def _parity_row(name: str, r: dict) -> str:
    deltas = [d for d in r["class_iou_delta"].values() if d is not None]
    worst = f"{max(deltas, key=abs):+.4f}" if deltas else "-"
    logit = [f"{v:.2e}" if v is not None else "-" for v in (r["max_abs_logit_error"], r["mean_abs_logit_error"])]
    verdict = "yes" if r["passed"] else "NO: " + "; ".join(r["failures"])
    cells = (name, r["precision"], f"{r['miou']:.3f}", f"{r['delta_miou']:+.4f}", f"{r['agreement']:.4f}", *logit, worst, verdict)
    return "| " + " | ".join(cells) + " |"


def _protocol_note(protocol: dict | None) -> str:
    if not protocol:
        return ", single scale"
    return (f", every runtime under the inference protocol (scales {protocol['scales']} of a {protocol['base_size']} "
            f"short side, flip {protocol['flip']}, windows {protocol['window']} at stride {protocol['stride']})")


def markdown(result: dict) -> str:
    table = ["| " + " | ".join(PARITY_COLUMNS) + " |", "|" + "---|" * len(PARITY_COLUMNS)]
    table += [_parity_row(name, r) for name, r in result["runtimes"].items()]
    return "\n\n".join([
        "# Parity against PyTorch eager FP32", "## Environment", format_environment(result["environment"]),
        "## Results", f"checkpoint `{result['checkpoint']}`, dataset {result['dataset']}, {result['samples']} images, "
        f"PyTorch FP32 mIoU {result['reference_miou']:.3f}" + _protocol_note(result.get("protocol")), "\n".join(table), "## Skipped", skipped_md(result["skipped"]),
    ]) + "\n"  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parity", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("checkpoint", type=Path, help="sunet-deploy .safetensors checkpoint (trained)")
    add_dataset_flags(parser, "the images compared: the validation set the checkpoint records, changed by these "
                      "flags (another --dataset: from the flags alone, with the checkpoint's classes)", renamed=("--root",))
    add_flag(parser, "--limit", default=50, help="compare on the first N images (0: all; default 50)")
    add_flag(parser, "--device", choices=("cpu", "cuda"), default="cpu")
    add_flag(parser, "--variants", help="comma-separated variant names (default: all of the device, none with --artifact)")
    add_flag(parser, "--artifact", metavar="PATH_OR_URI", help="an existing artifact to check: .onnx, .pt2, "
             ".engine/.plan, triton://HOST:PORT/MODEL or triton+grpc://HOST:PORT/MODEL (repeatable)")
    add_flag(parser, "--threads", default=os.cpu_count())
    add_flag(parser, "--engine")
    parser.add_argument("--max-delta-miou", action="append", default=[], metavar="PRECISION=POINTS",
                        help="override a tolerance, e.g. fp16=0.2 (repeatable)")  # fmt: skip
    add_protocol_flags(parser)
    add_flag(parser, "--workdir", default=Path("runs/bench/work"))
    add_flag(parser, "--output", default=Path("runs/parity"), help="report folder")
    args = parser.parse_args(argv)
    if args.limit < 0:
        parser.error("--limit must be 0 (all) or positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    limits = tolerances(args.max_delta_miou)
    try:
        meta = read_checkpoint_info(args.checkpoint).metadata
        protocol = protocol_from_args(args, crop_size=meta.crop_size)
        dataset, spec = validation_set(args, meta)
    except (ArtifactError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    shape = (1, 3, *spec.size) if spec.size else None
    try:
        given = open_artifacts(args, meta, shape)
    except (ArtifactError, RuntimeUnavailable, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    opened, skipped = open_runtimes(args, shape)
    opened.update(given)
    if protocol is not None:
        for name, rt in list(opened.items()):
            reason = protocol_obstacle(rt)
            if reason:
                skipped[name] = reason
                opened.pop(name).deactivate()
    reference = reference_name(args.device)
    if reference not in opened or len(opened) < 2:
        print(nothing_measured(skipped) + "\n(parity needs the PyTorch FP32 reference and one more runtime)", file=sys.stderr)
        return EXIT_USAGE
    stats = run_parity(opened, reference, dataset, meta.num_classes, protocol)
    precisions = {name: runtime.info.precision for name, runtime in opened.items()}
    records = {name: {"precision": precisions[name], **judge(s, stats[reference], limits[precisions[name]], meta.classes)}
               for name, s in stats.items() if name != reference}  # fmt: skip
    result = {"environment": environment(args.threads), "checkpoint": str(args.checkpoint), "samples": len(dataset),
              "dataset": spec.describe(), "reference_miou": 100 * stats[reference].confusion.scores().miou,
              "protocol": protocol.to_dict() if protocol else None,
              "runtimes": records, "skipped": skipped}  # fmt: skip
    save_report(result, markdown(result), args.output, "parity")
    failed = [name for name, r in records.items() if not r["passed"]]
    if failed:
        print(f"outside tolerance: {', '.join(failed)}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
