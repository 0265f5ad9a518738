"""Fixtures for the training tests: a toy in-memory dataset and a tiny TrainConfig."""

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
