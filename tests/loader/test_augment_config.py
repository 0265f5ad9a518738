"""AugmentConfig: the default list drops the rotations that break depth; `--recipe original`
gets the original list, through the training loader factory."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import pytest

from depthkit.loader.augment import AugmentConfig


def test_the_default_keeps_rooms_upright_and_original_rotates() -> None:
    default, original = AugmentConfig(), AugmentConfig.original()
    assert default.p_rot90 == 0.0 and default.rotate <= 10.0
    assert original.p_rot90 == 0.5 and original.rotate == 45.0
    differ = {f.name for f in fields(AugmentConfig)
              if getattr(default, f.name) != getattr(original, f.name)}
    assert differ == {"p_rot90", "rotate"}  # everything else is the original's
    assert default.any_geometry  # flips, small rotations, shift/scale and grid stay on


def test_for_recipe_picks_the_list() -> None:
    assert AugmentConfig.for_recipe("original") == AugmentConfig.original()
    assert AugmentConfig.for_recipe("default") == AugmentConfig()


@pytest.mark.parametrize("recipe", ["default", "original"])
def test_training_loaders_get_the_recipes_list(shard_root: Path, monkeypatch, recipe) -> None:
    import depthkit.loader as loader
    from depthkit.core.dist import DistInfo
    from depthkit.loader.batches import LoaderRequest
    from depthkit.train.config import Stage, TrainConfig
    from depthkit.train.data import shard_loader_factory

    got = []
    monkeypatch.setattr(loader, "build_loader", lambda cfg: got.append(cfg) or cfg)
    cfg = TrainConfig(shards=shard_root, stages=(Stage(32, 1),), batch_size=4, recipe=recipe)
    make = shard_loader_factory(cfg)
    for train in (True, False):
        make(LoaderRequest(split="train" if train else "val", res=32, batch_size=4,
                           train=train, dist=DistInfo(), device="cpu", seed=0, num_threads=1,
                           channels_last=False))
    assert asdict(got[0].augment) == asdict(AugmentConfig.for_recipe(recipe))
    assert got[1].augment is None  # validation is never augmented
