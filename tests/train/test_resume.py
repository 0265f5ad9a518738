"""A resumed run continues its loaders where they stopped: last.pt keeps each rank's loader
state, the loader (not the loop) skips the trained batches, and a state that does not fit (an
old checkpoint, another world size) falls back to the plain position, said in one line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from depthkit.loader.batches import LoaderRequest
from depthkit.loader.memory import tensor_loader_factory
from depthkit.model.checkpoint import load_checkpoint, save_checkpoint
from depthkit.train import Stage, TrainConfig, fit
from depthkit.train.checkpoints import continues_run

from .conftest import LoaderWrapper


class Handed(LoaderWrapper):
    """Counts the training batches the loader hands out, and records the states loaded."""

    def __init__(self, loader, log: dict) -> None:
        super().__init__(loader)
        self.log = log

    def load_state_dict(self, state: dict) -> None:
        self.log["loaded"].append(dict(state))
        super().load_state_dict(state)

    def __iter__(self):
        for batch in self.loader:
            self.log["batches"] += 1
            yield batch


def _counting(data: dict[str, torch.Tensor]) -> tuple:
    base, log = tensor_loader_factory(data), {"batches": 0, "loaded": []}

    def make(req: LoaderRequest):
        loader = base(req)
        return Handed(loader, log) if req.train else loader

    return make, log


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return all(torch.equal(wa[k], wb[k]) for k in wa)


def test_stopped_mid_epoch_the_loader_resumes_where_it_was(
    tmp_path: Path, toy_config, toy_data
) -> None:
    fit(toy_config(tmp_path / "a"), tensor_loader_factory(toy_data()))
    first = fit(toy_config(tmp_path / "b", max_steps=9), tensor_loader_factory(toy_data()))
    assert first["steps"] == 9  # 6 batches per epoch: 3 into epoch 2
    last = tmp_path / "b" / "last.pt"
    assert load_checkpoint(last)["loader"] == {"res": 32, "ranks": [{"epoch": 1, "batch": 3}]}
    factory, log = _counting(toy_data())
    resumed = fit(toy_config(tmp_path / "b", resume=last), factory)
    assert resumed["steps"] == 12 and resumed["epochs"] == 2
    assert log == {"batches": 3, "loaded": [{"epoch": 1, "batch": 3}]}  # only the rest
    assert _same_weights(tmp_path / "a" / "last.pt", last)


@pytest.mark.parametrize("loader", [None, {"res": 32, "ranks": [{"epoch": 1, "batch": 3}] * 2},
                                    {"res": 64, "ranks": [{"epoch": 1, "batch": 3}]}],
                         ids=["old checkpoint", "other world size", "other res"])
def test_a_loader_state_that_does_not_fit_falls_back_to_the_position(
    tmp_path: Path, toy_config, toy_data, caplog: pytest.LogCaptureFixture, loader
) -> None:
    fit(toy_config(tmp_path / "a"), tensor_loader_factory(toy_data()))
    fit(toy_config(tmp_path / "b", max_steps=9), tensor_loader_factory(toy_data()))
    last = tmp_path / "b" / "last.pt"
    ck = load_checkpoint(last)
    ck.pop("format"), ck.pop("version")
    if loader is None:
        del ck["loader"]
    else:
        ck["loader"] = loader
    save_checkpoint(last, ck)
    factory, log = _counting(toy_data())
    with caplog.at_level(logging.INFO, logger="depthkit.train.trainer"):
        fit(toy_config(tmp_path / "b", resume=last), factory)
    assert log == {"batches": 3, "loaded": [{"epoch": 1, "batch": 3}]}
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resume:")]
    assert len(lines) == 1 and "skips the 3 trained batches of epoch 2" in lines[0], lines
    assert _same_weights(tmp_path / "a" / "last.pt", last)


def test_an_epoch_end_checkpoint_of_a_schedule_continues_into_the_next_stage(
    tmp_path: Path
) -> None:
    cfg = TrainConfig(shards=tmp_path, stages=(Stage(32, 1), Stage(64, 1)))
    end_of_first = {"epoch": 1, "res": 32, "batch_in_epoch": 0}
    assert continues_run(cfg, end_of_first)  # optimiser and LR schedule carry on
    assert continues_run(cfg, {"epoch": 2, "res": 64, "batch_in_epoch": 0})  # finished
    # the original's way to grow: a 32 px run's checkpoint seeds a new 64 px stage
    assert not continues_run(TrainConfig(shards=tmp_path, stages=(Stage(64, 1),)), end_of_first)


def test_each_rank_takes_its_own_saved_state() -> None:
    from depthkit.core.dist import DistInfo
    from depthkit.train.checkpoints import loader_resume_state

    saved = {"res": 64, "ranks": [{"epoch": 2, "batch": 5, "dali": "a"},
                                  {"epoch": 2, "batch": 5, "dali": "b"}]}
    rank1 = DistInfo(rank=1, world_size=2, local_rank=1)
    assert loader_resume_state(saved, 64, rank1, 2, 5) == (saved["ranks"][1], None)
    # at an epoch boundary a state that does not fit is not needed: set_epoch is exact
    assert loader_resume_state(saved, 128, rank1, 3, 0) == (None, None)
    state, why = loader_resume_state(saved, 64, DistInfo(), 2, 5)
    assert state == {"epoch": 2, "batch": 5} and "2 rank(s) at 64 px" in why


def test_a_resume_with_more_epochs_follows_the_new_lr_plan(
    tmp_path: Path, toy_config, toy_data, caplog: pytest.LogCaptureFixture
) -> None:
    from depthkit.train.optim import OneCycle

    cfg = toy_config(tmp_path / "run")
    fit(cfg, tensor_loader_factory(toy_data()))  # 2 epochs x 6 batches: the LR at its floor
    last = tmp_path / "run" / "last.pt"
    longer = toy_config(tmp_path / "run", stages=(Stage(32, 4),), resume=last, max_steps=18)
    with caplog.at_level(logging.INFO, logger="depthkit"):
        fit(longer, tensor_loader_factory(toy_data()))
    ck = load_checkpoint(last)
    assert ck["meta"]["step"] == 18
    assert ck["scheduler"]["lr_lambdas"][0]["total_steps"] == 24
    group = ck["optimizer"]["param_groups"][0]
    peak, lr = group["initial_lr"], group["lr"]
    assert lr == pytest.approx(peak * OneCycle(24, cfg.warmup)(18))  # 1/4 of the peak
    assert lr > 100 * peak * OneCycle(12, cfg.warmup)(18)  # the old plan: its floor
    assert "follows this run's plan (total_steps 24" in caplog.text
