"""What training asks of a loader: the `BatchSource` protocol and the `LoaderRequest` for one.

Both the DALI shard loader (`depthkit.loader.pipeline.Loader`) and the in-memory
`depthkit.loader.memory.TensorLoader` are batch sources; training builds them through a
`LoaderFactory`, so tests and benchmarks can swap one for the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from depthkit.core.dist import DistInfo


class BatchSource(Protocol):
    """Batches of one split, one epoch per `iter()`, with the normalisation they were given."""

    norm: dict[str, dict[str, list[float]]]

    def __iter__(self) -> Iterator[dict[str, Tensor]]: ...
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...


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


LoaderFactory = Callable[[LoaderRequest], BatchSource]
