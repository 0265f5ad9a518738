"""Batches for training and eval: shards through DALI (aligned augmentation, backgrounds joined
by id), or tensors in memory. Names import lazily: DALI loads with the first name that needs it.
"""

from __future__ import annotations

from depthkit.core.lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
