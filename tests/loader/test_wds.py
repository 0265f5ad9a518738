"""The DALI-free webdataset loader: the DALI loader's batches, without augmentation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from depthkit.core.errors import DepthkitError
from depthkit.loader.config import LoaderConfig
from depthkit.loader.wds import build_wds_loader

RES = 64
TRAIN = 22  # samples in shard_root's train split (see conftest)
# Pillow and DALI's CPU decoder (both libjpeg-turbo) agree exactly on these shards (measured:
# 0 levels); nvJPEG on the GPU may round a level or two apart, hence 3 levels of slack.
LEVELS = 3 / 255


def _cfg(root: Path, **kw) -> LoaderConfig:
    base = {"res": RES, "batch_size": 4, "augment": None, "shuffle": False, "drop_last": False}
    return LoaderConfig(root, **{**base, **kw})


def test_batches_match_the_dali_loader(shard_root: Path) -> None:
    pipeline = pytest.importorskip("depthkit.loader.pipeline")
    dali, wds = pipeline.build_loader(_cfg(shard_root)), build_wds_loader(_cfg(shard_root))
    assert wds.norm == dali.norm
    a, b = list(dali), list(wds)
    assert len(a) == len(b) == len(wds) == len(dali) == 6  # 22 samples in batches of 4
    for x, y in zip(a, b, strict=True):
        assert set(x) == set(y) >= {"bg", "fgbg", "mask", "depth", "bgid"}
        assert torch.equal(x["bgid"], y["bgid"])
        for key in ("bg", "fgbg", "mask", "depth"):
            assert x[key].shape == y[key].shape and x[key].dtype == y[key].dtype, key
        assert set(y["mask"].unique().tolist()) <= {0.0, 1.0}
        assert (x["mask"] != y["mask"]).float().mean() < 0.002
        assert (x["depth"] - y["depth"]).abs().max() <= LEVELS
        for key in ("bg", "fgbg"):
            std = torch.tensor(wds.norm[key]["std"]).view(1, 3, 1, 1)
            assert ((x[key] - y[key]).abs() * std).max() <= LEVELS, key


def test_drop_last_ranks_and_errors(shard_root: Path) -> None:
    assert len(list(build_wds_loader(_cfg(shard_root, drop_last=True)))) == TRAIN // 4
    ranks = [build_wds_loader(_cfg(shard_root, rank=r, world_size=2, batch_size=32))
             for r in (0, 1)]
    assert [sum(len(b["bgid"]) for b in r) for r in ranks] == [11, 11]
    with pytest.raises(DepthkitError, match="px"):
        build_wds_loader(_cfg(shard_root, res=128))
    from depthkit.loader.augment import AugmentConfig

    with pytest.raises(DepthkitError, match="DALI"):
        build_wds_loader(_cfg(shard_root, augment=AugmentConfig()))
