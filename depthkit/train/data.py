"""Where training batches come from by default: the DALI shard pipeline, checked up front."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from depthkit.core.errors import DepthkitError
from depthkit.loader.batches import BatchSource, LoaderFactory, LoaderRequest
from depthkit.train.config import TrainConfig

log = logging.getLogger(__name__)


def check_batches(cfg: TrainConfig, per_rank: int, where: str = "training samples") -> None:
    """DepthkitError if a stage's batch is larger than `per_rank` samples: it would take 0
    steps (the loader drops the last partial batch), so the run would train nothing."""
    for stage in cfg.stages:
        batch = cfg.batch_for(stage.res)
        if batch > per_rank:
            which = "" if cfg.batch_size is not None else f" (the default at {stage.res} px)"
            raise DepthkitError(
                f"--batch-size {batch}{which} is more than the {per_rank} {where} per rank, so "
                f"the {stage.res} px stage would train 0 steps; pass --batch-size "
                f"{max(per_rank, 1)} or fewer")


def without_missing_val(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with validation off (said in one line) if its shards hold no val split."""
    from depthkit.shard.manifest import load_manifest, split_count

    if not cfg.val_every or split_count(load_manifest(cfg.shards), "val"):
        return cfg
    from depthkit.core.dist import dist_from_env

    if dist_from_env().is_master:
        log.info("%s holds no val split: training without validation (best.pt is not "
                 "written; last.pt is the model)", cfg.shards)
    return replace(cfg, val_every=0)


def shard_loader_factory(cfg: TrainConfig) -> LoaderFactory:
    """Loaders from the depthkit shard pipeline (DALI), after checking the shards up front."""
    from depthkit.core.dist import dist_from_env
    from depthkit.loader.wds import DALI_MISSING, dali_available
    from depthkit.shard.manifest import load_manifest, split_count, split_files
    from depthkit.shard.preflight import check_split_files, verify_first

    if not dali_available():  # no DALI wheel on macOS or Windows: eval and predict still work
        raise DepthkitError(f"depthkit train needs {DALI_MISSING}; "
                            "`depthkit eval` and `depthkit predict` work without it")
    manifest = load_manifest(cfg.shards)  # missing folder / manifest -> one-line error
    for stage in cfg.stages:
        split_files(manifest, stage.res, "train")  # missing resolution -> one-line error
        if cfg.val_every:  # the loaders check their files when built; val's only come later
            check_split_files(cfg.shards, manifest, stage.res, "val")
    check_batches(cfg, split_count(manifest, "train") // dist_from_env().world_size)
    if cfg.verify:
        verify_first(cfg.shards, progress=dist_from_env().is_master)

    def make(req: LoaderRequest) -> BatchSource:
        from depthkit.loader import AugmentConfig, LoaderConfig, build_loader

        return build_loader(LoaderConfig(
            shards=Path(cfg.shards), split=req.split, res=req.res, batch_size=req.batch_size,
            augment=AugmentConfig.for_recipe(cfg.recipe) if (req.train and cfg.augment) else None,
            shuffle=req.train, seed=req.seed, rank=req.dist.rank,
            world_size=req.dist.world_size, device=req.device, num_threads=req.num_threads,
            drop_last=req.train, channels_last=req.channels_last, prefetch=req.prefetch,
        ))

    return make
