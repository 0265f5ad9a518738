"""What a run does differently under torchrun: the model's wrappers, the ranks agreeing to
stop, and one set of BatchNorm statistics before validation.

Stopping: every rank must stop at the same step, or the others wait forever in the next
all_reduce. The ranks sum their stop flags (and whether their loss stayed finite) in one tiny
all_reduce at the steps that read the device anyway (log steps, saves, an epoch's last step),
not every step: the read of its result is a CPU-GPU sync, and one per step would keep the
host from queueing the next step while the GPU works. All ranks reach those steps at the same
step count, so they still stop together, at most `--log-every` steps after the signal.
"""

from __future__ import annotations

import signal

import torch
import torch.distributed as tdist
from torch import Tensor, nn

from depthkit.core.dist import all_reduce_sum
from depthkit.train.config import TrainConfig
from depthkit.train.runtime import Runtime


def wrap_model(model: nn.Module, cfg: TrainConfig, rt: Runtime) -> tuple[nn.Module, nn.Module]:
    """(the model to train, the model to validate) around the same parameters.

    Training: DDP first, then torch.compile (PyTorch's order: DDPOptimizer splits the graph at
    the gradient buckets, so the all-reduce overlaps the backward); `unwrap` undoes both.
    Validation never goes through DDP: its forward broadcasts buffers, a collective that a
    rank with fewer val batches would leave the others waiting in.
    """
    evaluated = torch.compile(model) if cfg.compile else model
    if not rt.dist.distributed:
        return evaluated, evaluated
    from torch.nn.parallel import DistributedDataParallel

    ids = [rt.device.index] if rt.device.type == "cuda" else None
    trained: nn.Module = DistributedDataParallel(model, device_ids=ids)
    if cfg.compile:
        trained = torch.compile(trained)
    return trained, evaluated


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics) on every rank: DDP broadcasts them before each
    training forward, so after the last step each rank holds its own; validation and the
    checkpoint then use rank 0's, as one process would. A no-op without a process group."""
    if tdist.is_available() and tdist.is_initialized():
        for buf in model.buffers():
            tdist.broadcast(buf, src=0)


def agree_to_stop(signum: int, loss_sums: Tensor | None, device: torch.device) -> tuple[int, bool]:
    """(the signal any rank got, 0 if none; whether any rank's summed loss is not finite):
    the same answer on every rank, from one all_reduce (a host read of its result)."""
    flags = torch.zeros(3, device=device)  # sigint, sigterm, non-finite loss
    if signum == signal.SIGINT:
        flags[0] = 1.0
    elif signum == signal.SIGTERM:
        flags[1] = 1.0
    if loss_sums is not None:
        flags[2] = (~torch.isfinite(loss_sums)).any().to(flags.dtype)
    sigint, sigterm, bad = all_reduce_sum(flags).tolist()
    agreed = signal.SIGTERM if sigterm else signal.SIGINT if sigint else 0
    return int(agreed), bool(bad)
