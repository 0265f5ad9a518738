"""Fixtures for the training tests: a toy in-memory dataset and a tiny TrainConfig; a base for
loader wrappers, and a per-step counter of host reads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from depthkit.train import Stage, TrainConfig

N_SAMPLES = 48  # 6 batches of 8 per epoch


def _toy_data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"bg": torch.randn(N_SAMPLES, 3, 32, 32, generator=g),
            "fgbg": torch.randn(N_SAMPLES, 3, 32, 32, generator=g),
            "mask": (torch.rand(N_SAMPLES, 1, 32, 32, generator=g) > 0.7).float(),
            "depth": torch.rand(N_SAMPLES, 1, 32, 32, generator=g)}


def _toy_config(out: Path, **kw) -> TrainConfig:
    base = TrainConfig(shards=out / "unused", out=out, stages=(Stage(32, 2),), batch_size=8,
                       optimizer="adamw", save_every=0, log_every=0, image_every=0,
                       val_every=0, device="cpu", model="diffunet",
                       model_options={"widths": (8, 16, 24, 32), "stem": 8})
    return replace(base, **kw)


@pytest.fixture
def toy_data():
    """A function making a fresh toy dataset: N_SAMPLES (48) random 32 px samples, seed 0."""
    return _toy_data


@pytest.fixture
def toy_config():
    """`toy_config(out, **changes)`: a tiny CPU diffunet TrainConfig (1 stage, 32 px, 2 epochs,
    batch 8, AdamW, no saves/logs/images/val) writing to `out`, with `changes` applied."""
    return _toy_config


class LoaderWrapper:
    """A training loader around another: everything but `__iter__` is the inner loader's
    (subclasses change the iteration: record, signal, count)."""

    def __init__(self, loader) -> None:
        self.loader, self.norm = loader, loader.norm

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)

    def __iter__(self):
        yield from self.loader


def read_counter(base: type) -> type:
    """`count_syncs`'s counter class extended with `Tensor.tolist` calls ("tolist"): on a CPU
    tensor that host read bypasses the dispatcher, so the base counter cannot see it."""

    class ReadCounter(base):
        def __enter__(self):
            counter, tolist = self, torch.Tensor.tolist

            def counted(t: torch.Tensor):
                counter.ops.append("tolist")
                return tolist(t)

            self._tolist = tolist
            torch.Tensor.tolist = counted
            return super().__enter__()

        def __exit__(self, *exc: object) -> None:
            super().__exit__(*exc)
            torch.Tensor.tolist = self._tolist

    return ReadCounter


class CountPerStep(LoaderWrapper):
    """A training loader whose batch k opens counter k (`counter_type()`) as it is handed out,
    closed when the loop asks for the next one: counter k sees step k's copy to the device,
    forward, loss, backward, optimiser step and on_step hook (not the loaders' own work)."""

    def __init__(self, loader, counter_type: type, counters: list) -> None:
        super().__init__(loader)
        self.counter_type, self.counters = counter_type, counters

    def __iter__(self):
        for batch in self.loader:
            counter = self.counter_type().__enter__()
            self.counters.append(counter)
            try:
                yield batch
            finally:
                counter.__exit__(None, None, None)
