"""One DALI pipeline per loader across epochs: batch counts per rank, reproducible epochs,
and exact resume from `state_dict()` (DALI checkpoints), for the shard and in-memory loaders."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import torch

from depthkit.core.dist import DistInfo
from depthkit.loader import pipeline
from depthkit.loader.augment import AugmentConfig
from depthkit.loader.config import LoaderConfig
from depthkit.loader.memory import TensorLoader
from depthkit.loader.pipeline import build_loader

RES = 32
TRAIN = 22  # samples in shard_root's train split (see conftest)
EPOCHS = 3


def _cfg(root: Path, **kw) -> LoaderConfig:
    base = {"res": RES, "batch_size": 4, "augment": AugmentConfig(), "seed": 5, "num_threads": 1,
            "shuffle_buffer": 64}
    return LoaderConfig(root, **{**base, **kw})


def _epochs(loader, epochs: int = EPOCHS) -> list[list[dict]]:
    """Each epoch's batches, with set_epoch before each as the trainer does."""
    out = []
    for e in range(epochs):
        loader.set_epoch(e)
        out.append(list(loader))
    return out


def _same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
        for x, y in zip(a, b, strict=True))


def _ids(batches: list[dict]) -> list[tuple]:
    """A per-sample identity that survives loading: bgid + the decoded fgbg's pixel sum."""
    return [(int(b), round(float(f.sum()), 1))
            for batch in batches for b, f in zip(batch["bgid"], batch["fgbg"], strict=True)]


def _saved(state: dict) -> dict:
    """The state as it comes back from a checkpoint (torch.load with weights_only=True)."""
    buf = io.BytesIO()
    torch.save({"loader": state}, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)["loader"]


@pytest.fixture
def builds(monkeypatch) -> list[int]:
    """The epochs a pipeline was built for, in order (each call of start_run)."""
    seen: list[int] = []
    real = pipeline.start_run

    def counting(graph, cfg, built, checkpoint=None):  # noqa: ANN001, ANN202
        seen.append(built)
        return real(graph, cfg, built, checkpoint)

    monkeypatch.setattr(pipeline, "start_run", counting)
    return seen


@pytest.mark.parametrize(("world", "batch", "drop_last"), [(2, 4, True), (2, 4, False),
                                                           (3, 7, False)])
def test_every_rank_yields_len_batches_every_epoch(shard_root: Path, world: int, batch: int,
                                                   drop_last: bool, caplog) -> None:
    """drop_last: full batches, the same count on every rank; else every sample once per epoch
    over the ranks, each rank's count following the shard DALI moves it to (3 ranks of 7, 7, 8
    samples in batches of 7: one rank has 2 batches, the others 1, a different rank each
    epoch)."""
    loaders = [build_loader(_cfg(shard_root, rank=r, world_size=world, batch_size=batch,
                                 drop_last=drop_last, augment=None)) for r in range(world)]
    counts = []
    for _ in range(EPOCHS):
        seen: list[tuple] = []
        lens = [len(loader) for loader in loaders]
        got = [list(loader) for loader in loaders]
        assert [len(g) for g in got] == lens
        counts.append(lens)
        for batches in got:
            seen += _ids(batches)
            assert all(b["bgid"].shape[0] > 0 for b in batches)
            if drop_last:
                assert all(b["bgid"].shape[0] == batch for b in batches)
        if drop_last:
            assert len(set(seen)) == len(seen) == world * ((TRAIN // world) // batch) * batch
        else:
            assert len(seen) == TRAIN and len(set(seen)) == TRAIN
    if world == 3:
        assert counts == [[1, 1, 2], [1, 2, 1], [2, 1, 1]]
    assert "resetting while epoch is not finished" not in caplog.text


def test_val_split_on_two_ranks(shard_root: Path) -> None:
    """The val split (2 samples): one per rank per epoch, len matching."""
    loaders = [build_loader(_cfg(shard_root, split="val", rank=r, world_size=2, augment=None,
                                 shuffle=False, drop_last=False)) for r in (0, 1)]
    for _ in range(EPOCHS):
        lens = [len(loader) for loader in loaders]
        got = [list(loader) for loader in loaders]
        assert [len(g) for g in got] == lens == [1, 1]
        assert sorted(_ids(got[0] + got[1])) == sorted(set(_ids(got[0] + got[1])))
        assert [b["bgid"].shape[0] for g in got for b in g] == [1, 1]


def test_one_pipeline_and_reproducible_epochs(shard_root: Path, builds: list[int]) -> None:
    first = _epochs(build_loader(_cfg(shard_root)))
    assert builds == [0]  # built once, reset between epochs
    second = _epochs(build_loader(_cfg(shard_root)))
    assert all(_same(a, b) for a, b in zip(first, second, strict=True))
    assert _ids(first[0]) != _ids(first[1])  # the order (and augmentations) change per epoch
    jumped = build_loader(_cfg(shard_root))
    jumped.set_epoch(1)
    again = build_loader(_cfg(shard_root))
    again.set_epoch(1)
    assert _same(list(jumped), list(again))  # a jump builds seeded from (seed, epoch, rank)
    assert builds == [0, 0, 1, 1]


def test_nothing_past_an_epoch_is_read_until_the_next(shard_root: Path, monkeypatch) -> None:
    """22 samples in batches of 4: DALI's epoch is 6 batches, the loader hands out 5 (drop_last);
    the 6th (padded) is read and dropped only when epoch 1 starts."""
    from depthkit.loader import epochs

    pulls = []
    real = epochs.DALIGenericIterator.__next__

    def counting(self):  # noqa: ANN001, ANN202
        pulls.append(1)
        return real(self)

    monkeypatch.setattr(epochs.DALIGenericIterator, "__next__", counting)
    loader = build_loader(_cfg(shard_root))
    assert len(list(loader)) == 5
    assert len(pulls) == 1 + 5  # one call reads the first batch when the iterator is built
    assert len(list(loader)) == 5
    assert len(pulls) == 1 + 5 + 1 + 5


def test_an_iteration_stopped_early_restarts_its_epoch(shard_root: Path,
                                                       builds: list[int]) -> None:
    loader = build_loader(_cfg(shard_root))
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert loader.epoch == 0
    fresh = build_loader(_cfg(shard_root))
    assert _same(list(loader), list(fresh))
    assert builds == [0, 0, 0]
    assert loader.epoch == 1  # the epoch moves on with its last batch


def test_resume_mid_epoch_gives_the_remaining_batches(shard_root: Path) -> None:
    """(a) after 2 batches of epoch 1; then epoch 2 continues the same stream."""
    ref = _epochs(build_loader(_cfg(shard_root)))
    run = build_loader(_cfg(shard_root))
    list(run)
    run.set_epoch(1)
    it = iter(run)
    taken = [next(it), next(it)]
    state = _saved(run.state_dict())
    assert state["epoch"] == 1 and state["batch"] == 2 and isinstance(state["dali"], str)
    resumed = build_loader(_cfg(shard_root))
    resumed.load_state_dict(state)
    resumed.set_epoch(1)
    assert len(resumed) == len(ref[1])  # the whole epoch; the trainer counts what it skips
    assert _same(taken, ref[1][:2])
    assert _same(list(resumed), ref[1][2:])
    resumed.set_epoch(2)
    assert _same(list(resumed), ref[2])


@pytest.mark.parametrize("when", ["at the last batch", "after the epoch"])
def test_state_at_the_end_of_an_epoch_resumes_at_the_next(shard_root: Path, when: str) -> None:
    """(b) taken while the last batch is being trained on, or once the epoch is over."""
    ref = _epochs(build_loader(_cfg(shard_root)))
    run = build_loader(_cfg(shard_root))
    it = iter(run)
    for _ in range(len(ref[0])):
        next(it)
    if when == "after the epoch":
        assert next(it, None) is None
    state = _saved(run.state_dict())
    assert (state["epoch"], state["batch"]) == (0, len(ref[0]))
    resumed = build_loader(_cfg(shard_root))
    resumed.load_state_dict(state)
    assert resumed.epoch == 1
    resumed.set_epoch(1)
    assert _same(list(resumed), ref[1])
    assert _same(list(resumed), ref[2])


def test_state_without_a_checkpoint_skips_batches(shard_root: Path, caplog,
                                                  builds: list[int]) -> None:
    """(c) an old checkpoint ({epoch, batch} only) rebuilds the epoch seeded from (seed,
    epoch, rank) and drops the batches already handed out, saying so in one line."""
    whole = build_loader(_cfg(shard_root))
    whole.set_epoch(1)
    ref = list(whole)
    run = build_loader(_cfg(shard_root))
    run.set_epoch(1)
    it = iter(run)
    for _ in range(3):
        next(it)
    full = run.state_dict()
    for state, why in (({"epoch": 1, "batch": 3}, "has no DALI checkpoint"),
                       ({**full, "setup": "other"}, "is from other loader settings")):
        resumed = build_loader(_cfg(shard_root))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="depthkit.loader.pipeline"):
            resumed.load_state_dict(state)
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and why in lines[0] and "first 3 batches dropped" in lines[0]
        assert resumed.state_dict() == {"epoch": 1, "batch": 3}
        assert _same(list(resumed), ref[3:])
    assert builds == [1, 1, 1, 1]


def test_state_round_trip_before_any_iteration(shard_root: Path) -> None:
    loader = build_loader(_cfg(shard_root))
    loader.set_epoch(2)
    assert loader.state_dict() == {"epoch": 2, "batch": 0}
    other = build_loader(_cfg(shard_root))
    other.load_state_dict(loader.state_dict())
    assert other.epoch == 2 and _same(list(other), list(loader))


def _tensor_loader(**kw) -> TensorLoader:
    g = torch.Generator().manual_seed(0)
    data = {"bg": torch.randn(30, 3, 4, 4, generator=g), "bgid": torch.arange(30)}
    return TensorLoader(data, 4, seed=3, **kw)


@pytest.mark.parametrize("dist", [DistInfo(), DistInfo(rank=1, world_size=2)])
def test_tensor_loader_state(dist: DistInfo) -> None:
    """(d) mid-epoch and end-of-epoch states of the in-memory loader."""
    ref = _epochs(_tensor_loader(dist=dist))
    run = _tensor_loader(dist=dist)
    run.set_epoch(1)
    it = iter(run)
    taken = [next(it), next(it)]
    state = _saved(run.state_dict())
    assert state == {"epoch": 1, "batch": 2}
    resumed = _tensor_loader(dist=dist)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)
    assert len(resumed) == len(ref[1])
    assert _same(taken + list(resumed), ref[1])
    resumed.set_epoch(2)
    assert _same(list(resumed), ref[2])
    end = _tensor_loader(dist=dist)
    end.set_epoch(1)
    it = iter(end)
    for _ in range(len(ref[1])):
        next(it)
    after = _tensor_loader(dist=dist)
    after.load_state_dict(_saved(end.state_dict()))
    assert after.epoch == 2 and _same(list(after), ref[2])


def test_a_cpu_loader_writes_nothing_to_the_temp_folder(shard_root: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    loader = build_loader(_cfg(shard_root, augment=AugmentConfig()))
    assert sum(1 for _ in loader) == len(loader)
    assert list(temp.iterdir()) == []  # a killed run would leave these behind
