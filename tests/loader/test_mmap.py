"""LoaderConfig.mmap reaches DALI's webdataset reader, and both ways give the same batches
(plain reads are the default: a mapped tar counts in the process's RSS; docs/loader.md)."""

from __future__ import annotations

from pathlib import Path

import torch
from nvidia.dali import fn

from depthkit.loader.augment import AugmentConfig
from depthkit.loader.config import LoaderConfig
from depthkit.loader.pipeline import build_loader


def test_mmap_reaches_the_reader_and_batches_match(shard_root: Path, monkeypatch) -> None:
    seen: list[bool] = []
    reader = fn.readers.webdataset

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(kwargs["dont_use_mmap"])
        return reader(*args, **kwargs)

    monkeypatch.setattr(fn.readers, "webdataset", spy)
    assert LoaderConfig(shard_root).mmap is False

    def batches(mmap: bool) -> list[dict[str, torch.Tensor]]:
        cfg = LoaderConfig(shard_root, res=32, batch_size=4, augment=AugmentConfig(), seed=3,
                           num_threads=1, mmap=mmap)
        return list(build_loader(cfg))

    plain, mapped = batches(False), batches(True)
    assert seen == [True, False]
    assert len(plain) == len(mapped) > 0
    for a, b in zip(plain, mapped, strict=True):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
