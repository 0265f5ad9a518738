"""What training asks of a loader: the `BatchSource` protocol and the `LoaderRequest` for one.

Both the DALI shard loader (`depthkit.loader.pipeline.Loader`) and the in-memory
`depthkit.loader.memory.TensorLoader` are batch sources; training builds them through a
`LoaderFactory`, so tests and benchmarks can swap one for the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor

from depthkit.core.dist import DistInfo


class BatchSource(Protocol):
    """Batches of one split, one epoch per `iter()`, with the normalisation they were given.

    `set_epoch(e)` chooses the epoch the next `iter()` yields (the epoch also moves on by one
    when its last batch is handed out); `len()` counts all batches of that epoch.
    `state_dict()` says where the last batch handed out left the source, in plain types
    (checkpoint-safe): at least {"epoch", "batch"} (batches of that epoch handed out), plus
    backend data; after `load_state_dict(state)` the next `iter()` yields exactly the batches
    of that epoch not yet handed out, or the next epoch when the state stood at an end.
    """

    norm: dict[str, dict[str, list[float]]]

    def __iter__(self) -> Iterator[dict[str, Tensor]]: ...
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class LoaderRequest:
    """The batch source `fit` asks a loader factory for."""

    split: str
    res: int
    batch_size: int
    train: bool  # augment + shuffle + drop_last when True
    dist: DistInfo
    device: str
    seed: int
    num_threads: int
    channels_last: bool
    prefetch: int = 2  # DALI prefetch queue depth


LoaderFactory = Callable[[LoaderRequest], BatchSource]
