"""Optimizer, parameter groups and learning-rate schedules of the paper's recipes.

The learning rate is a pure function of the step (`lr_factor`), so a resumed run needs only the
step to be back on schedule.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig


def lr_factor(step: int, total_steps: int, config: TrainConfig, steps_per_epoch: int) -> float:
    """Multiplier of the base LR at `step` (0-based): linear warm-up, then cosine or step decay.

    cosine: 0.5 (1 + cos(pi t / T)) per iteration (segmentation recipe).
    step: `step_gamma` ** (epoch // `step_epochs`) (classification recipe: /10 every 30 epochs).
    """
    if step < config.warmup_iterations:
        return (step + 1) / config.warmup_iterations
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
    epoch = step // steps_per_epoch
    return config.step_gamma ** (epoch // config.step_epochs)


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """Backbone at the base LR; segmentation head weights x head_lr_mult and biases x head_bias_lr_mult."""
    if config.task != "segmentation":
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr_mult": 1.0}]
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    head_weights = [p for n, p in model.head.named_parameters() if not n.endswith("bias")]
    head_biases = [p for n, p in model.head.named_parameters() if n.endswith("bias")]
    return [
        {"params": backbone, "lr_mult": 1.0},
        {"params": head_weights, "lr_mult": config.head_lr_mult},
        {"params": head_biases, "lr_mult": config.head_bias_lr_mult},
    ]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    groups = [g for g in parameter_groups(model, config) if g["params"]]
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay
    )


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    """Apply the schedule to every group (times its multiplier); returns the base group's LR."""
    for group in optimizer.param_groups:
        group["lr"] = base_lr * factor * group["lr_mult"]
    return base_lr * factor


def kaiming_init(model: nn.Module) -> None:
    """The paper's ImageNet init: Kaiming normal (fan_out) convs, zero biases, unit BatchNorm."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def configure_batchnorm(model: nn.Module, momentum: float, freeze: bool) -> None:
    """Set the BN momentum; frozen BN keeps its statistics (eval mode) and affine parameters."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum
            if freeze:
                m.eval()
                m.weight.requires_grad_(False)
                m.bias.requires_grad_(False)


def train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """model.train(), keeping the backbone's BatchNorm layers in eval mode when they are frozen."""
    model.train()
    if freeze_bn:
        for m in model.backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
