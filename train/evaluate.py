"""Evaluation: dataset-wide confusion matrix, per-class IoU, mIoU, pixel accuracy (top-1/top-5 for
classifiers), single-scale or the paper's multi-scale + flip + sliding-window protocol.

    python -m train.evaluate runs/demo/best.safetensors    # the validation set the checkpoint records
    python -m train.evaluate runs/voc/best.safetensors --dataset voc --data-root VOC2012 --multi-scale
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from sunet_deploy.cli import EXIT_OK, EXIT_STATUS_HELP, EXIT_USAGE
from sunet_deploy.checkpoint import CheckpointError, load_model
from sunet_deploy.data import DatasetError
from sunet_deploy.data.selection import DatasetChoice, add_dataset_flags, check_classes, evaluation_spec
from sunet_deploy.fileio import atomic_write_bytes
from sunet_deploy.metrics import ConfusionMatrix, format_table
from sunet_deploy.flags import add_flag
from sunet_deploy.pipeline.masks import class_indices
from sunet_deploy.protocol import Protocol, add_protocol_flags, protocol_from_args
from sunet_deploy.tiling import InferModel, segment

from .data import EvalSet, make_loader
from .distributed import Context, all_reduce_sum, pick_device


def torch_model(model: nn.Module, device: torch.device, num_classes: int, amp: bool = False) -> InferModel:
    """A PyTorch model seen as a runtime by the protocol's engine (images already normalised)."""

    def infer(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return InferModel(infer, "logits", num_classes)


def protocol_masks(model: nn.Module, image: torch.Tensor, protocol: Protocol, num_classes: int,
                   amp: bool = False) -> np.ndarray:  # fmt: skip
    """Masks (N, H, W) of a normalised batch under the protocol (sunet_deploy.tiling, as every runtime)."""
    runtime = torch_model(model, image.device, num_classes, amp)
    return np.stack([segment(x.permute(1, 2, 0).cpu().numpy(), runtime, protocol) for x in image])


@torch.no_grad()
def evaluate_segmentation(model: nn.Module, loader, num_classes: int, device: torch.device,
                          protocol: Protocol | None = None, ctx: Context | None = None,
                          amp: bool = False, progress: bool = False) -> ConfusionMatrix:  # fmt: skip
    """Dataset-wide confusion matrix (summed over processes when `ctx` is distributed)."""
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes)
    for image, label in _progress(loader, progress, "eval"):
        image = image.to(device, non_blocking=True)
        if protocol is None:
            with torch.autocast(device.type, enabled=amp):  # argmax on the device, as an --argmax export's graph
                masks = class_indices(model(image).argmax(dim=1).cpu().numpy(), "labels")
        else:
            masks = protocol_masks(model, image, protocol, num_classes, amp)
        cm.update(masks, label.numpy())
    model.train(was_training)
    if ctx is not None:
        cm.matrix = all_reduce_sum(torch.from_numpy(cm.matrix), ctx).numpy()
    return cm


@torch.no_grad()
def evaluate_classification(model: nn.Module, loader, device: torch.device, ctx: Context | None = None,
                            amp: bool = False) -> dict:  # fmt: skip
    """Top-1 and top-5 accuracy (top-k capped at the number of classes)."""
    was_training = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.float64)  # top-1 hits, top-5 hits, samples
    for image, target in loader:
        with torch.autocast(device.type, enabled=amp):
            logits = model(image.to(device, non_blocking=True)).float().cpu()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == target[:, None]
        counts += torch.tensor([hits[:, 0].sum().item(), hits.any(dim=1).sum().item(), len(target)], dtype=torch.float64)
    model.train(was_training)
    if ctx is not None:
        counts = all_reduce_sum(counts, ctx)
    top1, top5, total = counts.tolist()
    return {"top1": top1 / max(total, 1), "top5": top5 / max(total, 1), "samples": int(total)}


def constant_prediction(cm: ConfusionMatrix, cls: int) -> ConfusionMatrix:
    """The confusion matrix of predicting `cls` everywhere on the same labels (a baseline)."""
    matrix = np.zeros_like(cm.matrix)
    matrix[:, cls] = cm.matrix.sum(axis=1)
    return ConfusionMatrix.from_matrix(matrix, cm.ignore_index)


def shard(dataset, ctx: Context):
    """This process's share of an evaluation set (every world_size-th sample, no padding)."""
    return dataset if not ctx.distributed else Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from sunet_deploy.progress import progress

    return progress(iterable, desc=desc, leave=False)


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n\n")[0],
                                epilog=EXIT_STATUS_HELP)  # the flags' help says their defaults
    p.add_argument("checkpoint", help="a sunet-deploy checkpoint (e.g. runs/demo/best.safetensors)")
    add_dataset_flags(p, "the images scored: the validation set the checkpoint records, changed by these flags "
                      "(another --dataset: from the flags alone; voc_aug scores on VOC)")
    p.add_argument("--resize-short", type=int, help="single-scale: resize the short side to this size first (default: keep)")
    add_protocol_flags(p)
    add_flag(p, "--output", help="JSON results file (default: <checkpoint stem>_eval_<split or kind>.json next to it)")
    add_flag(p, "--device", default="auto", help="auto (default), cpu or cuda")
    add_flag(p, "--workers", default=2, help="data loader worker processes (default 2; 0: load in the main process)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results, table = run(args)
    except (CheckpointError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(table)
    name = f"{Path(args.checkpoint).stem}_eval_{results['split'] or results['dataset']['kind']}.json"
    output = Path(args.output or Path(args.checkpoint).with_name(name))
    atomic_write_bytes(output, (json.dumps(results, indent=2) + "\n").encode())
    print(f"results: {output}")
    return EXIT_OK


def run(args: argparse.Namespace) -> tuple[dict, str]:
    model, ckpt = load_model(args.checkpoint)
    if ckpt.meta.model.get("task") == "classification":
        raise ValueError(f"{args.checkpoint} is a classifier; this evaluates segmentation checkpoints")
    spec, note = evaluation_spec(DatasetChoice.from_args(args), ckpt.meta)
    if note:
        print(f"note: {args.checkpoint} {note}", file=sys.stderr)
    dataset = spec.build()
    check_classes(list(dataset.classes), spec, ckpt.meta)
    device = pick_device(args.device)
    protocol = protocol_from_args(args, crop_size=ckpt.meta.crop_size)
    loader = make_loader(EvalSet(dataset, resize_short=None if protocol else args.resize_short), 1, args.workers)
    start = time.perf_counter()
    cm = evaluate_segmentation(model.to(device), loader, ckpt.meta.num_classes, device, protocol, progress=True)
    seconds = time.perf_counter() - start
    majority = int(cm.matrix.sum(axis=1).argmax())
    baseline = constant_prediction(cm, majority).scores()
    results = {
        "checkpoint": str(args.checkpoint), "checkpoint_sha256": ckpt.sha256, "dataset": spec.to_dict(),
        "split": spec.split, "images": len(dataset), "seconds": round(seconds, 2),
        "protocol": protocol.to_dict() if protocol else {"single_scale": True, "resize_short": args.resize_short},
        **cm.to_dict(ckpt.meta.classes),
        "majority_class_baseline": {"class": ckpt.meta.classes[majority], "miou": baseline.miou,
                                    "pixel_accuracy": baseline.pixel_accuracy},
    }  # fmt: skip
    mode = "multi-scale: " + protocol.describe() if protocol else "single scale"
    table = (f"{args.checkpoint} on {spec.describe()} ({len(dataset)} images, {mode}, {seconds:.1f} s)\n"
             f"{format_table(cm, ckpt.meta.classes)}\n"
             f"baseline (predict '{ckpt.meta.classes[majority]}' everywhere): mIoU {100 * baseline.miou:.2f}, "
             f"pixel accuracy {100 * baseline.pixel_accuracy:.2f}")  # fmt: skip
    return results, table


if __name__ == "__main__":
    sys.exit(main())
