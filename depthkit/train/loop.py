"""The loop itself: `train_one_epoch` (forward, loss, backward, step) and `validate`."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from depthkit.core.dist import all_reduce_sum
from depthkit.model import to_outputs
from depthkit.train.losses import Criterion
from depthkit.train.runtime import Runtime


@dataclass
class TrainState:
    """What a checkpoint restores."""

    model: nn.Module  # possibly DDP/compile-wrapped
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    epoch: int = 0  # completed epochs (global, across stages)
    step: int = 0  # optimiser steps taken
    batch_in_epoch: int = 0  # batches of `epoch` already trained (mid-epoch checkpoints)
    best: float = math.inf  # best validation loss so far
    per_step_scheduler: bool = False
    # this epoch's summed (total, mask, depth) losses, on the device; not checkpointed: read
    # where the host reads anyway (log steps, saves) to catch a non-finite loss without a sync
    loss_sums: Tensor | None = None

    def finish_epoch(self) -> None:
        """Count the epoch done; a per-epoch LR schedule (StepLR) steps here."""
        self.epoch += 1
        self.batch_in_epoch = 0
        if not self.per_step_scheduler:
            self.scheduler.step()


# on_step(state, batch, detached outputs, detached loss, detached per-head losses)
Hook = Callable[[TrainState, dict[str, Tensor], dict[str, Tensor], Tensor, dict], None]


def train_one_epoch(
    state: TrainState,
    loader: Iterable[dict[str, Tensor]],
    criterion: Criterion,
    rt: Runtime,
    *,
    start: int = 0,
    max_steps: int | None = None,
    on_step: Hook | None = None,
) -> dict[str, float]:
    """Train over what `loader` yields of this epoch; `start` is the number of its batches
    trained before a resume (the loader, restored with `load_state_dict`, skips them).

    Returns mean per-head losses over the batches trained. `on_step` runs after every
    optimiser step (logging, checkpoints) with detached outputs and losses. Nothing here
    reads the device: the summed losses stay on it until the epoch's end.
    """
    model, opt, scaler = state.model, state.optimizer, state.scaler
    model.train()
    # total, mask, depth (summed on device: no sync)
    sums = state.loss_sums = torch.zeros(3, device=rt.device)
    n = 0
    if max_steps is not None:  # no batch past the last step: the loader counts only trained
        loader = itertools.islice(loader, max(0, max_steps - state.step))
    for i, batch in enumerate(loader):
        batch = rt.to_device(batch)
        with rt.autocast():
            out = model(batch["bg"], batch["fgbg"])
        loss, parts = criterion(out, batch)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)  # a fused optimiser keeps the scaler's inf check on the device
        scaler.update()
        if state.per_step_scheduler:
            state.scheduler.step()
        state.step += 1
        state.batch_in_epoch = start + i + 1
        sums += torch.stack([loss.detach(), parts["mask"], parts["depth"]])
        n += 1
        if on_step is not None:
            out = {k: v.detach() for k, v in out.items()}
            on_step(state, batch, out, loss.detach(), parts)
    means = (sums / max(n, 1)).tolist()
    return {"loss": means[0], "mask": means[1], "depth": means[2], "batches": n}


@torch.no_grad()
def validate(
    model: nn.Module, loader: Iterable[dict[str, Tensor]], criterion: Criterion, rt: Runtime
) -> dict[str, float]:
    """Validation losses (mean per sample) and MetricAccumulator metrics, reduced over ranks.

    `model` is the plain (or compiled) module, not DDP's wrapper: ranks may hold different
    numbers of val batches, so the forward must not communicate; the two reductions at the
    end are the only collectives. The sums stay on the device until one read at the end.
    """
    from depthkit.eval.metrics import MetricAccumulator

    model.eval()
    acc = MetricAccumulator()
    sums = torch.zeros(4, dtype=torch.float64, device=rt.device)  # total, mask, depth, samples
    for batch in loader:
        batch = rt.to_device(batch)
        with rt.autocast():
            out = model(batch["bg"], batch["fgbg"])
        loss, parts = criterion(out, batch)
        b = batch["mask"].shape[0]  # a shape: known on the host
        sums[:3] += torch.stack([loss.detach(), parts["mask"], parts["depth"]]).double() * b
        sums[3] += b
        probs = to_outputs(out)
        acc.update(probs["mask"], batch["mask"], probs["depth"], batch["depth"])
    all_reduce_sum(sums)
    acc.reduce()
    total, mask, depth, count = sums.tolist()
    count = max(count, 1.0)
    return {"loss": total / count, "loss_mask": mask / count, "loss_depth": depth / count,
            **acc.compute()}
