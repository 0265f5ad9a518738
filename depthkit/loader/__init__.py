"""Batches for training and eval: shards through DALI (aligned augmentation, backgrounds joined
by id), or tensors in memory. Names import lazily: DALI loads with the first name that needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "AugmentConfig": "depthkit.loader.augment",
    "BackgroundBank": "depthkit.loader.backgrounds",
    "BatchSource": "depthkit.loader.batches",
    "LoaderFactory": "depthkit.loader.batches",
    "LoaderRequest": "depthkit.loader.batches",
    "TensorLoader": "depthkit.loader.memory",
    "DEFAULT_NORM": "depthkit.loader.config",
    "LoaderConfig": "depthkit.loader.config",
    "epoch_seed": "depthkit.loader.config",
    "shard_range": "depthkit.loader.config",
    "Loader": "depthkit.loader.pipeline",
    "build_loader": "depthkit.loader.pipeline",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
