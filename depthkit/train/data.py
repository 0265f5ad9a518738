"""Where training batches come from by default: the DALI shard pipeline, checked up front."""

from __future__ import annotations

from pathlib import Path

from depthkit.loader.batches import BatchSource, LoaderFactory, LoaderRequest
from depthkit.train.config import TrainConfig


def shard_loader_factory(cfg: TrainConfig) -> LoaderFactory:
    """Loaders from the depthkit shard pipeline (DALI), after checking the shards up front."""
    from depthkit.core.dist import dist_from_env
    from depthkit.shard.manifest import load_manifest, split_files
    from depthkit.shard.preflight import check_split_files, verify_first

    manifest = load_manifest(cfg.shards)  # missing folder / manifest -> one-line error
    if cfg.verify:
        verify_first(cfg.shards, progress=dist_from_env().is_master)
    for stage in cfg.stages:
        split_files(manifest, stage.res, "train")  # missing resolution -> one-line error
        if cfg.val_every:  # the loaders check their files when built; val's only come later
            check_split_files(cfg.shards, manifest, stage.res, "val")

    def make(req: LoaderRequest) -> BatchSource:
        from depthkit.loader import AugmentConfig, LoaderConfig, build_loader

        return build_loader(LoaderConfig(
            shards=Path(cfg.shards), split=req.split, res=req.res, batch_size=req.batch_size,
            augment=AugmentConfig() if (req.train and cfg.augment) else None,
            shuffle=req.train, seed=req.seed, rank=req.dist.rank,
            world_size=req.dist.world_size, device=req.device, num_threads=req.num_threads,
            drop_last=req.train, channels_last=req.channels_last,
        ))

    return make
