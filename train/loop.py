"""The training loop: one process of a (possibly torchrun-launched) run.

Only rank 0 writes files: metrics.jsonl, config.json, latest_state.safetensors, best.safetensors,
curves.png. A step is `accumulate` micro-batches; state is saved only between steps.
"""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sunet_deploy.checkpoint import load_backbone_weights
from sunet_deploy.data import IGNORE_INDEX, DatasetError
from sunet_deploy.fileio import atomic_write_bytes
from sunet_deploy.models import ModelSpec, build_model, count_parameters

from . import distributed as D
from .config import TrainConfig
from .data import EvalSet, ResumableSampler, TrainSet, check_training_set, make_loader, training_datasets
from .evaluate import constant_prediction, evaluate_classification, evaluate_segmentation, shard
from .plots import plot_curves
from .processes import Interrupted
from .rundir import CONFIG_FILE, CURVES_FILE, METRICS_FILE, check_out_dir, remove_earlier_run
from .schedule import build_optimizer, configure_batchnorm, kaiming_init, lr_factor, set_lr, train_mode
from .state import BEST_FILE, STATE_FILE, Progress, load_state, save_best, save_state

MAJORITY_SAMPLE = 100  # training images whose labels decide the majority class of the baseline


class Diverged(RuntimeError):
    """The loss became NaN or infinite; the run stopped without saving the broken weights."""


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy averaged over the pixels not labelled 255 (0 if there are none)."""
    valid = (target != IGNORE_INDEX).sum()
    total = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / valid.clamp(min=1)


class RunLog:
    """metrics.jsonl (one JSON object per line) plus console lines; silent on ranks other than 0."""

    def __init__(self, path: Path, enabled: bool, keep_until_step: int | None = None) -> None:
        self.path, self.enabled, self.start = path, enabled, time.time()
        if enabled and keep_until_step is not None and path.exists():  # a resumed run: drop the lost tail
            kept = [l for l in path.read_text().splitlines() if json.loads(l).get("step", 0) <= keep_until_step]
            atomic_write_bytes(path, "".join(f"{l}\n" for l in kept).encode())

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps({**record, "time": round(time.time() - self.start, 2)}) + "\n")

    def say(self, text: str) -> None:
        if self.enabled:
            from tqdm import tqdm

            tqdm.write(text)


class Trainer:
    def __init__(self, config: TrainConfig, ctx: D.Context) -> None:
        self.config, self.ctx, self.out = config, ctx, Path(config.out_dir)
        self.amp = config.amp and ctx.device.type == "cuda"
        self.train_data, self.val_data, self.dataset_specs = training_datasets(config)
        self.spec = ModelSpec(config.arch, config.task, len(self.train_data.classes), config.output_stride,
                              config.head, config.model_overrides)  # fmt: skip
        self.model = self._build_model()
        self.net = DistributedDataParallel(self.model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None) if ctx.distributed else self.model  # fmt: skip
        self.optimizer = build_optimizer(self.model, config)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.amp)
        self.micro_batch = config.batch_size // config.accumulate
        self.sampler = ResumableSampler(self.train_data, ctx, config.seed)
        self.batches_per_epoch = check_training_set(self.train_data, ctx, self.micro_batch)
        self.steps_per_epoch = max(1, self.batches_per_epoch // config.accumulate)
        self.total_steps = config.iterations or config.epochs * self.steps_per_epoch
        val_batch = 1 if config.task == "segmentation" else self.micro_batch
        val_set = EvalSet(shard(self.val_data, ctx), config.task, config.val_resize_short, config.crop_size)
        self.val_loader = make_loader(val_set, val_batch, config.workers)
        self.progress = Progress()
        if config.resume:
            self.progress = load_state(self.out / STATE_FILE, self.model, self.optimizer, self.scaler, config)
        self.log = RunLog(self.out / METRICS_FILE, ctx.is_main, self.progress.step if config.resume else None)
        self.baseline_class = self._majority_class() if config.task == "segmentation" else None

    def _build_model(self) -> nn.Module:
        torch.manual_seed(self.config.seed)
        model = build_model(self.spec)
        kaiming_init(model)
        if self.config.init_backbone:
            load_backbone_weights(model, self.config.init_backbone)
        configure_batchnorm(model.backbone, self.config.bn_momentum, self.config.freeze_bn)
        if self.config.sync_bn and self.ctx.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model.to(self.ctx.device)

    def _majority_class(self) -> int:
        counts = np.zeros(256, dtype=np.int64)
        for i in range(min(MAJORITY_SAMPLE, len(self.train_data))):
            counts += np.bincount(self.train_data[i][1].ravel(), minlength=256)
        counts[IGNORE_INDEX] = 0
        return int(counts.argmax())

    # ---------------------------------------------------------------- the loop

    def fit(self) -> dict:
        """Train to the last step (or --stop-at-step); returns the final summary record."""
        config, p = self.config, self.progress
        if self.ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            if config.overwrite:
                remove_earlier_run(self.out)
            atomic_write_bytes(self.out / CONFIG_FILE, (config.to_json() + "\n").encode())
        self._announce()
        bar = self._bar()
        train_mode(self.model, config.freeze_bn)
        window = {"loss": 0.0, "steps": 0, "images": 0, "start": time.perf_counter()}
        micro, step_loss = 0, 0.0
        loader = make_loader(TrainSet(self.train_data, config), self.micro_batch, config.workers, self.sampler,
                             pin=self.ctx.device.type == "cuda")  # fmt: skip
        while p.step < self.total_steps:
            self.sampler.start(p.epoch, p.batch_in_epoch * self.micro_batch)
            for images, targets in loader:
                micro += 1
                step_loss += self._forward_backward(images, targets, sync=micro == config.accumulate)
                p.batch_in_epoch += 1
                if micro < config.accumulate:
                    continue
                lr = self._optimizer_step(step_loss)
                window = self._after_step(bar, window, step_loss, lr)
                micro, step_loss = 0, 0.0
                if p.step >= self.total_steps or p.step == config.stop_at_step:
                    break
            else:
                p.epoch, p.batch_in_epoch = p.epoch + 1, 0
                continue
            if p.step == config.stop_at_step and p.step < self.total_steps:
                bar.close()
                return self._stop()
        bar.close()
        return self._finish()

    def _forward_backward(self, images: torch.Tensor, targets: torch.Tensor, sync: bool) -> float:
        device = self.ctx.device
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True).long()
        context = self.net.no_sync() if self.ctx.distributed and not sync else nullcontext()
        with context:
            with torch.autocast(device.type, enabled=self.amp):
                logits = self.net(images)
            if self.config.task == "segmentation":
                loss = segmentation_loss(logits, targets)
            else:
                loss = F.cross_entropy(logits.float(), targets)
            self.scaler.scale(loss / self.config.accumulate).backward()
        return loss.item() / self.config.accumulate

    def _optimizer_step(self, step_loss: float) -> float:
        """Check the loss on every process, then step at the scheduled LR; raises Diverged on NaN/inf."""
        p = self.progress
        if D.any_process(not math.isfinite(step_loss), self.ctx):
            raise Diverged(f"the training loss became {step_loss} at step {p.step + 1}")
        lr = set_lr(self.optimizer, self.config.lr, lr_factor(p.step, self.total_steps, self.config, self.steps_per_epoch))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        p.step += 1
        return lr

    def _after_step(self, bar, window: dict, step_loss: float, lr: float) -> dict:
        """Progress bar, metrics line, validation and checkpoint of the step just taken."""
        config, p = self.config, self.progress
        window["loss"] += step_loss
        window["steps"] += 1
        window["images"] += config.batch_size * self.ctx.world_size
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}", refresh=False)
        if p.step % config.log_every == 0 or p.step == self.total_steps:
            loss = D.all_reduce_sum(torch.tensor([window["loss"] / window["steps"]]), self.ctx).item() / self.ctx.world_size
            speed = window["images"] / (time.perf_counter() - window["start"])
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", img_s=f"{speed:.1f}")
            self.log.write({"event": "train", "step": p.step, "epoch": p.epoch, "loss": loss, "lr": lr, "images_per_s": speed})
            window = {"loss": 0.0, "steps": 0, "images": 0, "start": time.perf_counter()}
        if p.step % config.val_every == 0 and p.step < self.total_steps:
            self.validate()
        if p.step % config.checkpoint_every == 0 or p.step == config.stop_at_step:
            self.save()
        return window

    # ---------------------------------------------------------------- validation and files

    def validate(self) -> dict:
        """Score the validation set; a new best score writes best.safetensors."""
        config, p = self.config, self.progress
        D.broadcast_buffers(self.model, self.ctx)
        start = time.perf_counter()
        if config.task == "segmentation":
            cm = evaluate_segmentation(self.model, self.val_loader, len(self.val_data.classes), self.ctx.device, ctx=self.ctx, amp=self.amp)
            scores = cm.scores()
            baseline = constant_prediction(cm, self.baseline_class).scores()
            record = {"miou": scores.miou, "pixel_accuracy": scores.pixel_accuracy,
                      "baseline_miou": baseline.miou, "baseline_pixel_accuracy": baseline.pixel_accuracy,
                      "iou": cm.to_dict(self.val_data.classes)["iou"]}  # fmt: skip
            score = scores.miou
        else:
            record = evaluate_classification(self.model, self.val_loader, self.ctx.device, self.ctx, self.amp)
            score = record["top1"]
        record = {"event": "val", "step": p.step, **record, "seconds": round(time.perf_counter() - start, 2)}
        train_mode(self.model, config.freeze_bn)
        if score > p.best_score:
            p.best_score, p.best_step = score, p.step
            if self.ctx.is_main:
                save_best(self.out / BEST_FILE, self.model, self.spec.to_dict(), self.val_data, self._summary(record))
        self.log.write(record)
        self.log.say(self._val_line(record))
        return record

    def _val_line(self, record: dict) -> str:
        if "miou" in record:
            return (f"step {record['step']}: val mIoU {100 * record['miou']:.2f}%, pixel acc "
                    f"{100 * record['pixel_accuracy']:.2f}% (majority-class baseline: mIoU "
                    f"{100 * record['baseline_miou']:.2f}%, pixel acc {100 * record['baseline_pixel_accuracy']:.2f}%)")  # fmt: skip
        return f"step {record['step']}: val top-1 {100 * record['top1']:.2f}%, top-5 {100 * record['top5']:.2f}%"

    def _summary(self, record: dict) -> dict:
        c = self.config
        summary = {"step": record["step"], "validation": {k: v for k, v in record.items() if k not in ("event", "iou")},
                   "iterations": self.total_steps, "batch_size": c.batch_size * self.ctx.world_size,
                   "crop_size": c.crop_size, "lr": c.lr, "schedule": c.schedule, "world_size": self.ctx.world_size}  # fmt: skip
        if self.dataset_specs:  # what evaluation and the benchmarks read back (sunet_deploy.data.validation_spec)
            train, val = self.dataset_specs
            summary["dataset"] = {"train": train.to_dict(), "val": val.to_dict()}
        return summary

    def save(self) -> None:
        if self.ctx.is_main:
            save_state(self.out / STATE_FILE, self.model, self.optimizer, self.scaler, self.progress, self.config)

    def _stop(self) -> dict:
        record = {"event": "stopped", "step": self.progress.step, "state": str(self.out / STATE_FILE)}
        self.log.write(record)
        self.log.say(f"stopped after step {self.progress.step} as asked; continue with --resume")
        return record

    def _finish(self) -> dict:
        p = self.progress
        last_val = self.validate()
        self.save()
        hashes = D.gather_hashes(D.parameters_sha256(self.model), self.ctx)
        record = {"event": "end", "step": p.step, "best_score": p.best_score, "best_step": p.best_step,
                  "replica_parameter_sha256": hashes, "replicas_identical": len(set(hashes)) == 1,
                  "best": str(self.out / BEST_FILE), "state": str(self.out / STATE_FILE)}  # fmt: skip
        if "baseline_miou" in last_val:
            record["baseline_miou"] = last_val["baseline_miou"]
        self.log.write(record)
        if self.ctx.is_main:
            plot_curves(self.out / METRICS_FILE, self.out / CURVES_FILE)
            metric = "mIoU" if self.config.task == "segmentation" else "top-1"
            self.log.say(f"done: best val {metric} {100 * p.best_score:.2f}% at step {p.best_step}; "
                         f"best model {self.out / BEST_FILE}; curves {self.out / CURVES_FILE}")  # fmt: skip
        return record

    def _announce(self) -> None:
        c, p = self.config, self.progress
        self.log.say(
            f"{c.task}: {c.arch} ({count_parameters(self.model):,} parameters) on {c.dataset} "
            f"({len(self.train_data)} train / {len(self.val_data)} val images), {self.total_steps} steps of "
            f"{c.batch_size} x {self.ctx.world_size} process(es), {self.ctx.device}"
            + (f"; resumed at step {p.step}" if c.resume else "")
        )

    def _bar(self):
        from sunet_deploy.progress import progress

        enabled = self.ctx.is_main and self.config.progress
        return progress(total=self.total_steps, initial=self.progress.step, disable=not enabled, desc="train")


def run(config: TrainConfig) -> dict:
    """Set up the process group, train, tear down. Errors are raised with the run's position in them."""
    check_out_dir(config)  # before any rank joins the group, so that no rank has written yet
    ctx = D.setup(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        trainer = Trainer(config, ctx)
        try:
            return trainer.fit()
        except (Diverged, DatasetError) as exc:
            trainer.log.write({"event": "error", "step": trainer.progress.step, "error": str(exc)})
            raise type(exc)(f"{_clean(exc)}. Training stopped; {_saved_note(trainer)}") from exc
        except Interrupted as exc:
            trainer.log.write({"event": "error", "step": trainer.progress.step, "error": str(exc)})
            resume = "; continue with --resume" if (trainer.out / STATE_FILE).exists() else ""
            raise Interrupted(exc.signum, f" at step {trainer.progress.step}; {_saved_note(trainer)}{resume}") from exc
    finally:
        D.teardown(ctx)


def _saved_note(trainer: Trainer) -> str:
    state, best = trainer.out / STATE_FILE, trainer.out / BEST_FILE
    kept = [f"{path} kept unchanged" for path in (state, best) if path.exists()]
    return "; ".join(kept) if kept else "nothing was saved yet (no checkpoint before this step)"


def _clean(exc: Exception) -> str:
    """The last line of an error re-raised by a DataLoader worker (which wraps it in a traceback)."""
    text = str(exc).strip()
    return text.splitlines()[-1].split(": ", 1)[-1] if "Traceback" in text else text
