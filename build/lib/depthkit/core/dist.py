"""Distributed setup from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK).

One `DistInfo` is passed around; `is_master` (global rank 0) gates logging and checkpoints.
`pick_device` maps --device (auto, cpu, cuda[:N]) to this rank's device: the one CUDA check.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from depthkit.core.errors import DepthkitError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_master(self) -> bool:
        """True on global rank 0, the only rank that logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_from_env(env: Mapping[str, str] | None = None) -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (as set by torchrun); single process if absent."""
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise DepthkitError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {err}") \
            from None
    if not 0 <= rank < world:
        raise DepthkitError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def init_distributed(info: DistInfo, device: torch.device) -> None:
    """Join the process group (nccl on CUDA, gloo on CPU) if the job has several ranks."""
    if not info.distributed or (tdist.is_available() and tdist.is_initialized()):
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    tdist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    log.info("joined process group: rank %d of %d (%s)", info.rank, info.world_size, backend)


def shutdown_distributed() -> None:
    """Leave the process group if one is up."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks in place (a no-op without a process group)."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t


def barrier() -> None:
    """Wait for every rank (a no-op without a process group)."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.barrier()


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> this rank's GPU if CUDA is up, else the CPU: the one place CUDA is checked.

    'cuda' means the GPU of this rank (LOCAL_RANK under torchrun); 'cuda:N' is taken as given.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DepthkitError(f"--device {name}: no CUDA device on this machine")
        return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    if name != "cpu":
        raise DepthkitError(f"--device: unknown device '{name}' (auto, cpu, cuda)")
    return torch.device("cpu")
