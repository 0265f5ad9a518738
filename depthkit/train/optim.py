"""Optimisers and LR schedules: AdamW + one-cycle (default) or SGD + StepLR per epoch (the
original); `apply_recipe` (train.config) fills the options a run leaves unset."""

from __future__ import annotations

import math

import torch
from torch import nn

from depthkit.core.errors import DepthkitError
from depthkit.train.config import TrainConfig, apply_recipe

OPTIMIZERS = ("sgd", "adamw")


class OneCycle:
    """LR factor of a one-cycle schedule: linear warm-up to 1, cosine down to ~0.

    A callable object (not a function) so LambdaLR keeps it in state_dict; progress past the
    planned total stays at the floor instead of failing like OneCycleLR.
    """

    def __init__(self, total_steps: int, warmup: float = 0.25, floor: float = 1e-3) -> None:
        self.total_steps, self.warmup, self.floor = max(1, total_steps), warmup, floor

    def __call__(self, step: int) -> float:
        t = min(step / self.total_steps, 1.0)
        w = max(self.warmup, 1e-8)
        if t < w:
            return self.floor + (1 - self.floor) * t / w
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * (t - w) / (1 - w)))


def build_optimizer(
    cfg: TrainConfig, model: nn.Module, fused: bool = False
) -> torch.optim.Optimizer:
    """SGD (momentum, L2 via weight_decay; the original) or AdamW (decoupled decay).

    `fused` (on CUDA) takes the fused kernels: one launch per step, and a grad scaler's
    inf check stays on the GPU (others make `GradScaler.step` read it on the host).
    """
    cfg = apply_recipe(cfg)
    if cfg.optimizer not in OPTIMIZERS:
        raise DepthkitError(
            f"--optimizer: '{cfg.optimizer}' is not one of {', '.join(OPTIMIZERS)}")
    kind = {"fused": True} if fused else {}  # else torch's choice: foreach on CUDA
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, **kind)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                             **kind)


def build_scheduler(
    cfg: TrainConfig, opt: torch.optim.Optimizer, total_steps: int
) -> tuple[torch.optim.lr_scheduler.LRScheduler, bool]:
    """StepLR stepped per epoch (sgd) or one-cycle stepped per batch (adamw); True if per batch."""
    if apply_recipe(cfg).optimizer == "sgd":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
        return sched, False
    return torch.optim.lr_scheduler.LambdaLR(opt, OneCycle(total_steps, cfg.warmup)), True
