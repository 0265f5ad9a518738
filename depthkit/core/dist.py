"""Distributed setup from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE).

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
    local_world_size: int = 1  # ranks on this machine (they share its cores)

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
        local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError as err:
        raise DepthkitError("bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK/"
                            f"LOCAL_WORLD_SIZE): {err}") from None
    if not 0 <= rank < world:
        raise DepthkitError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return DistInfo(rank=rank, world_size=world, local_rank=local,
                    local_world_size=max(1, local_world))


def init_distributed(info: DistInfo, device: torch.device) -> None:
    """Join the process group (nccl on CUDA, gloo on CPU) if the job has several ranks."""
    if not info.distributed or (tdist.is_available() and tdist.is_initialized()):
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    extra = {}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        extra["device_id"] = device  # binds NCCL to this GPU at once (no lazy guess of the GPU)
    tdist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size,
                             **extra)
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


def all_gather_objects(obj: object) -> list[object]:
    """Every rank's `obj` (picklable), in rank order: `[obj]` without a process group."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return [obj]
    out: list[object] = [None] * tdist.get_world_size()
    tdist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every rank (a no-op without a process group)."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.barrier()


def device_kind(name: str) -> str:
    """--device with 'auto' resolved: 'cuda' if CUDA is up, else 'cpu'; other names as given."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def pick_device(name: str, info: DistInfo | None = None) -> torch.device:
    """--device -> this rank's device: the one place CUDA is checked.

    'auto' is the GPU if CUDA is up, else the CPU. 'cuda' is this rank's GPU: under torchrun
    cuda:(LOCAL_RANK % visible GPUs), so a job that shows each rank one GPU through
    CUDA_VISIBLE_DEVICES works as well as one that shows them all; single-process 'cuda:N' is
    taken as given, and refused under torchrun (every rank would take the same GPU).
    """
    info = info or DistInfo()
    name = device_kind(name)
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DepthkitError(f"--device {name}: no CUDA device on this machine")
        if name == "cuda":
            return torch.device("cuda", info.local_rank % torch.cuda.device_count())
        if info.distributed:
            raise DepthkitError(f"--device {name}: under torchrun each rank takes the GPU of its "
                                "LOCAL_RANK; pass --device cuda (or auto)")
        try:
            return torch.device(name)
        except RuntimeError:
            raise DepthkitError(f"--device: unknown device '{name}' (auto, cpu, cuda, cuda:N)") \
                from None
    if name != "cpu":
        raise DepthkitError(f"--device: unknown device '{name}' (auto, cpu, cuda)")
    return torch.device("cpu")
