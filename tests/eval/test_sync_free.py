"""Metrics and eval's per-batch path never make the host wait for the device: no value read
back, no host-built tensor, no data-dependent shape (`count_syncs` in tests/conftest.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from depthkit.eval import EvalConfig, MetricAccumulator, prepare, run_eval


def maps(device: str, b: int = 3, size: int = 16) -> list[torch.Tensor]:
    """mask_prob, mask_true, depth_pred, depth_true of shape (b, 1, size, size)."""
    if device == "meta":
        return [torch.empty(b, 1, size, size, device="meta") for _ in range(4)]
    g = torch.Generator().manual_seed(0)
    return [torch.rand(b, 1, size, size, generator=g) for _ in range(4)]


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_update_runs_no_sync_op(device: str, count_syncs) -> None:
    """On meta any host read would raise; on the CPU the counter sees every op by name."""
    acc = MetricAccumulator()
    with count_syncs() as c:
        for _ in range(3):
            acc.update(*maps(device))
    assert c.ops == []
    assert acc._sums.device.type == device  # summed where the inputs are, read once later


def test_sums_are_read_once_at_the_end() -> None:
    acc = MetricAccumulator()
    one, two = maps("cpu"), [1 - t for t in maps("cpu")]
    acc.update(*one)
    acc.update(*two)
    together = MetricAccumulator()
    together.update(*(torch.cat([a, b]) for a, b in zip(one, two, strict=True)))
    assert acc.compute() == pytest.approx(together.compute(), rel=1e-12, nan_ok=True)
    assert acc.compute()["samples"] == 6


class CountFromSecondBatch:
    """A loader over fixed batches that counts the sync ops of everything run while the
    second and later batches are out (the first one may draw the picture grid)."""

    def __init__(self, batches: list[dict], norm: dict, counter) -> None:  # noqa: ANN001
        self.batches, self.norm, self.counter = batches, norm, counter

    def __iter__(self):  # noqa: ANN204
        yield self.batches[0]
        with self.counter:
            yield from self.batches[1:]


def test_eval_per_batch_path_runs_no_sync_op(tiny_checkpoint: Path, shard_root: Path,
                                             count_syncs) -> None:
    run = prepare(EvalConfig(checkpoint=tiny_checkpoint, shards=shard_root, split="train",
                             batch_size=4, device="cpu", grid_samples=2))
    batches = list(run.loader)
    assert len(batches) >= 3
    counter = count_syncs()
    run = dataclasses.replace(run, loader=CountFromSecondBatch(batches, run.loader.norm, counter))
    advanced: list[object] = []
    result = run_eval(run, progress=advanced.append)
    assert counter.ops == []
    assert result.metrics["samples"] == sum(b["bg"].shape[0] for b in batches) == 22
    assert len(result.grid_rows) == 2
    assert all(type(n) is int for n in advanced)  # the bar is fed counts, never tensors
