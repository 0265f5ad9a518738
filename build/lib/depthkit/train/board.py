"""TensorBoard output of a run (scalars, picture grids; rank 0 only) and the sample rate."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from depthkit.core.normalization import denormalize_images
from depthkit.model import to_outputs
from depthkit.train.config import TrainConfig


def image_grid(
    batch: dict[str, Tensor], out: dict[str, Tensor], norm: dict[str, Any], rows: int = 4
) -> Tensor:
    """(3, H*rows, W*6) picture: bg | fgbg | true mask | predicted mask | true depth | pred."""

    def denorm(x: Tensor, key: str) -> Tensor:
        stats = norm.get(key) if norm else None
        if not stats:
            return x.clamp(0, 1)
        return denormalize_images(x, stats["mean"], stats["std"])

    k = min(rows, batch["bg"].shape[0])
    pred = to_outputs({key: v[:k] for key, v in out.items()})
    cols = [
        denorm(batch["bg"][:k].float(), "bg"),
        denorm(batch["fgbg"][:k].float(), "fgbg"),
        batch["mask"][:k].float().expand(-1, 3, -1, -1),
        pred["mask"].expand(-1, 3, -1, -1),
        batch["depth"][:k].float().expand(-1, 3, -1, -1),
        pred["depth"].expand(-1, 3, -1, -1),
    ]
    rows_img = torch.cat(cols, dim=3)  # (k, 3, H, 6W)
    return torch.cat(list(rows_img), dim=1).detach().cpu()  # (3, kH, 6W)


class Board:
    """A TensorBoard writer that exists on rank 0 only; on other ranks every call does nothing."""

    def __init__(self, cfg: TrainConfig, enabled: bool) -> None:
        self.logdir, self.enabled = cfg.tb_dir, enabled
        self.writer: Any = None

    def open(self) -> None:
        if self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.logdir))

    @property
    def active(self) -> bool:
        """True while a writer is open (rank 0, inside `fit`)."""
        return self.writer is not None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        """One scalar per item, tagged <prefix>/<key>."""
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def image(self, tag: str, make: Callable[[], Tensor], step: int) -> None:
        """The picture `make()` returns (only called where there is a writer)."""
        if self.writer is not None:
            self.writer.add_image(tag, make(), step)


class Throughput:
    """Samples per second since the last `rate()` (or `reset()`)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.t0, self.samples = time.perf_counter(), 0

    def add(self, samples: int) -> None:
        self.samples += samples

    def rate(self) -> float:
        """The rate of the window now closing; a new window starts."""
        rate = self.samples / max(time.perf_counter() - self.t0, 1e-9)
        self.reset()
        return rate
