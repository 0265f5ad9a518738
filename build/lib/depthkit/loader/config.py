"""What a shard loader loads and how: LoaderConfig, default stats, sharding and seeding rules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from depthkit.core.errors import DepthkitError

if TYPE_CHECKING:  # an annotation only: LoaderConfig and DEFAULT_NORM stay DALI-free
    from depthkit.loader.augment import AugmentConfig

# Mean/std of the original dataset at 224 px, used when a manifest has no stats.
DEFAULT_NORM = {
    "bg": {"mean": [0.498, 0.506, 0.486], "std": [0.279, 0.278, 0.319]},
    "fgbg": {"mean": [0.496, 0.502, 0.483], "std": [0.280, 0.278, 0.318]},
}


@dataclass(frozen=True)
class LoaderConfig:
    """What to load and how.

    The loader yields dicts of tensors: bg, fgbg float32 (B, 3, res, res) normalised with
    `Loader.norm`; mask float32 (B, 1, res, res) of 0/1; depth float32 (B, 1, res, res) in
    [0, 1] (0 = near); bgid int64 (B,). Images lie on `device`.
    """

    shards: Path
    split: str = "train"  # "train" | "val"
    res: int = 224  # reads files[str(res)] of the manifest
    batch_size: int = 32
    augment: AugmentConfig | None = None  # None = no augmentation (validation)
    shuffle: bool = True
    seed: int = 0
    rank: int = 0  # global rank
    world_size: int = 1
    device: str = "cpu"  # "cuda[:n]" -> mixed decode on that GPU; "cpu" -> device_id=None
    num_threads: int = 2
    drop_last: bool = True  # True: full batches, same count on every rank; False: all samples once
    channels_last: bool = False  # bg/fgbg in torch.channels_last memory format
    bg_bank: bool = True  # False decodes each sample's background again (for benchmarks)
    prefetch: int = 2  # DALI prefetch queue depth
    shuffle_buffer: int = 1024  # reader shuffle buffer (shards are shuffled at write time too)
    # False: the reader reads the tars with plain file I/O. Memory-mapped, every page it has
    # read counts in the process's RSS (file-backed and reclaimable, but RSS-based container
    # limits and monitors see it grow to the bytes read: ~9 GB over a 400k-sample epoch);
    # plain reads cost no measurable speed (docs/loader.md#memory).
    mmap: bool = False


def shard_range(total: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, end) of the samples DALI's reader gives a rank (its own split rule)."""
    return total * rank // world_size, total * (rank + 1) // world_size


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A DALI seed (31-bit) that depends only on (seed, epoch, rank)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0] % (2**31 - 1))


def device_id(device: str) -> int | None:
    """DALI device_id for a torch device string: None on the CPU (DALI 2.x, not -1)."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return None
    if dev.type != "cuda":
        raise DepthkitError(f"--device must be cpu or cuda[:n], got {device!r}")
    if not torch.cuda.is_available():
        raise DepthkitError(f"device {device!r} requested but CUDA is not available")
    return dev.index if dev.index is not None else torch.cuda.current_device()
