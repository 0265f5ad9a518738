"""Batches from tensors already in memory: the model-only ceiling in benchmarks, and tests."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from depthkit.core.dist import DistInfo
from depthkit.loader.batches import BatchSource, LoaderFactory, LoaderRequest


class TensorLoader:
    """Batches from tensors already in memory, split over ranks like the shard loader.

    Rank r of w takes samples r, r + w, ... of a per-epoch permutation (seeded by seed + epoch),
    so ranks see disjoint shares; drop_last keeps full batches and equal counts on every rank.
    Like the shard loader, the epoch moves on when its last batch is handed out, and an
    iteration stopped early restarts its epoch unless a state was loaded.
    """

    def __init__(self, data: dict[str, Tensor], batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, dist: DistInfo = DistInfo(), drop_last: bool = True,
                 norm: dict[str, Any] | None = None) -> None:
        self.data, self.batch_size, self.shuffle = data, batch_size, shuffle
        self.seed, self.drop_last = seed, drop_last
        self.rank, self.world_size = dist.rank, dist.world_size
        self.norm = norm or {}
        self.epoch = 0
        self.n = next(iter(data.values())).shape[0]
        self._done = 0  # batches of `epoch` handed out
        self._start = 0  # where the next iter() starts (a loaded state)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch the next iter() yields (the start of it, unless it is this one)."""
        if int(epoch) != self.epoch:
            self.epoch, self._done, self._start = int(epoch), 0, 0

    def state_dict(self) -> dict[str, int]:
        """Where the loader stands: the epoch and the batches of it handed out."""
        return {"epoch": self.epoch, "batch": self._done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The next iter() yields the rest of the state's epoch (the next epoch at its end)."""
        self.epoch, self._done = int(state["epoch"]), int(state["batch"])
        if self._done >= len(self):
            self.epoch, self._done = self.epoch + 1, 0
        self._start = self._done

    def _indices(self) -> Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        per_rank = self.n // self.world_size if self.drop_last else None
        mine = order[self.rank :: self.world_size]
        return mine[:per_rank] if per_rank is not None else mine

    def __len__(self) -> int:
        k = len(self._indices())
        return k // self.batch_size if self.drop_last else math.ceil(k / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        idx, n = self._indices(), len(self)
        start, self._start = self._start, 0
        for b in range(start, n):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            self._done = b + 1
            if self._done == n:
                self.epoch, self._done = self.epoch + 1, 0
            yield {k: v[sel] for k, v in self.data.items()}


def resized(data: dict[str, Tensor], res: int) -> dict[str, Tensor]:
    """Image tensors (N, C, H, W) resized to res x res: nearest for the mask, else bilinear."""
    out = {}
    for k, v in data.items():
        if v.dim() == 4 and v.shape[-1] != res:
            mode = "nearest" if k == "mask" else "bilinear"
            kw: dict[str, Any] = {} if mode == "nearest" else {"align_corners": False}
            v = torch.nn.functional.interpolate(v, size=(res, res), mode=mode, **kw)
        out[k] = v
    return out


def tensor_loader_factory(
    train: dict[str, Tensor], val: dict[str, Tensor] | None = None,
    norm: dict[str, Any] | None = None,
) -> LoaderFactory:
    """A LoaderFactory over in-memory tensors (same data at every resolution request, resized)."""

    def make(req: LoaderRequest) -> BatchSource:
        data = train if req.split == "train" or val is None else val
        return TensorLoader(resized(data, req.res), req.batch_size, shuffle=req.train,
                            seed=req.seed, dist=req.dist, drop_last=req.train, norm=norm)

    return make
