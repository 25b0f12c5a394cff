"""Optimizers and learning-rate schedules (the recipes of docs/training.md as configuration)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .config import LRScheduleConfig, OptimizerConfig


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    """Weight decay applies to conv and linear weights only, not to BN or biases."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
        )
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def lr_factor(config: LRScheduleConfig, epochs: int) -> Callable[[float], float]:
    """The LR multiplier at a fractional epoch ``t`` in [0, epochs)."""

    def factor(t: float) -> float:
        if config.name == "onecycle":
            peak = config.warmup_epochs or 0.3 * epochs
            if t < peak:
                return 0.04 + 0.96 * t / peak
            return 0.5 * (1 + math.cos(math.pi * (t - peak) / max(epochs - peak, 1e-9)))
        warm = 1.0
        if t < config.warmup_epochs:
            warm = (t + 1e-3) / config.warmup_epochs
        if config.name == "step":
            return warm * config.gamma ** sum(t >= m for m in config.milestones)
        if config.name == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * t / epochs))
        return warm

    return factor


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer, config: LRScheduleConfig, epochs: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler; its state (the step count) checkpoints with the run."""
    factor = lr_factor(config, epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step / steps_per_epoch))
