"""A newcomer's first runs: defaults that train, and one-line errors instead of silent no-ops."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from depthkit.core.errors import DepthkitError
from depthkit.loader.memory import tensor_loader_factory
from depthkit.model.checkpoint import load_checkpoint
from depthkit.shard.schema import MANIFEST_NAME, RES_MULTIPLE, check_res
from depthkit.train import LossConfig, Stage, TrainConfig, fit, parse_schedule
from depthkit.train.config import ORIGINAL_BATCH, apply_recipe, stages_from_options
from depthkit.train.optim import build_optimizer, build_scheduler
from depthkit.train.summary import format_train_summary

STATS = {"mean": [0.5] * 3, "std": [0.25] * 3}
NORM = {"bg": STATS, "fgbg": STATS}


def tiny_data(n: int, res: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random pictures with a mask and a depth map: enough to run the loop, not to learn."""
    g = torch.Generator().manual_seed(seed)
    return {"bg": torch.randn(n, 3, res, res, generator=g),
            "fgbg": torch.randn(n, 3, res, res, generator=g),
            "mask": (torch.rand(n, 1, res, res, generator=g) > 0.5).float(),
            "depth": torch.rand(n, 1, res, res, generator=g)}


def config(tmp_path: Path, **kw) -> TrainConfig:
    base = TrainConfig(shards=tmp_path / "unused", out=tmp_path / "run",
                       stages=(Stage(32, 2),), batch_size=8, optimizer="adamw",
                       save_every=0, log_every=0, image_every=0, val_every=1)
    return replace(base, **kw)


@pytest.fixture(scope="module")
def factory():
    return tensor_loader_factory(tiny_data(48, seed=1), tiny_data(8, seed=2), NORM)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "depthkit", "train", *args],
                          capture_output=True, text=True, timeout=300)


def _events(run: Path) -> list[Path]:
    return sorted((run / "tb").glob("events.out.tfevents.*"))


# --- 1: a batch larger than the data is refused before any work ------------------------------


def test_default_batch_larger_than_the_shards_is_refused(tmp_path: Path, shard_root: Path) -> None:
    out = tmp_path / "run"
    run = _cli("--shards", str(shard_root), "--res", "32", "-o", str(out))  # default batch 400
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.strip().count("\n") == 0
    assert "22 training samples per rank" in run.stderr and "--batch-size 22 or fewer" in run.stderr
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()
    assert not (out / "tb").exists()


@pytest.mark.parametrize("batch", [0, -1])
def test_batch_size_below_one_is_refused(tmp_path: Path, batch: int) -> None:
    with pytest.raises(DepthkitError, match=f"--batch-size {batch}: must be >= 1"):
        TrainConfig(shards=tmp_path, batch_size=batch)


def test_in_memory_batch_larger_than_the_data_is_refused(tmp_path: Path, factory) -> None:
    with pytest.raises(DepthkitError, match="0 steps"):
        fit(config(tmp_path, batch_size=64), factory)  # 48 samples
    assert not (tmp_path / "run" / "best.pt").exists()


# --- 2: the default recipe trains well; --recipe original is the course's ---------------------


def test_default_recipe_is_adamw_one_cycle(tmp_path: Path) -> None:
    cfg = apply_recipe(TrainConfig(shards=tmp_path))
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay) == ("adamw", 4e-3, 1e-2)
    assert (cfg.loss.mask, cfg.loss.depth) == ("bce_dice", "l1_ssi_grad")
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(TrainConfig(shards=tmp_path), model)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["lr"] == 4e-3
    sched, per_step = build_scheduler(TrainConfig(shards=tmp_path), opt, 150)
    assert per_step  # one-cycle over the planned steps, not StepLR
    for _ in range(60):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] > 1e-3  # SGD + StepLR was at 4.7e-6 here


def test_original_recipe_is_the_course(tmp_path: Path) -> None:
    cfg = apply_recipe(TrainConfig(shards=tmp_path, recipe="original"))
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum) == ("sgd", 0.047, 1e-3, 0.9)
    assert (cfg.step_size, cfg.gamma) == (2, 0.1)
    assert (cfg.loss.mask, cfg.loss.depth) == ("mse", "mse")
    assert {r: cfg.batch_for(r) for r in ORIGINAL_BATCH} == {64: 100, 128: 32, 224: 12}
    opt = build_optimizer(cfg, torch.nn.Linear(2, 2))
    assert isinstance(opt, torch.optim.SGD)
    assert not build_scheduler(cfg, opt, 10)[1]  # StepLR, per epoch
    explicit = apply_recipe(TrainConfig(shards=tmp_path, recipe="original", lr=0.01,
                                        loss=LossConfig(mask="bce_dice")))
    assert explicit.lr == 0.01 and explicit.loss.mask == "bce_dice"
    assert explicit.loss.depth == "mse"
    with pytest.raises(DepthkitError, match="--recipe"):
        TrainConfig(shards=tmp_path, recipe="fast")


def test_help_names_the_recipe_and_its_defaults() -> None:
    run = _cli("--help")
    assert run.returncode == 0
    text = " ".join(run.stdout.split())
    assert "--recipe" in text and "--overwrite" in text and "AdamW lr 4e-3" in text


def test_the_demo_trains_as_before(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import depthkit.train
    from depthkit.demo import DemoConfig, train_model

    seen = []
    monkeypatch.setattr(depthkit.train, "fit", lambda cfg, *a: seen.append(cfg) or {})
    train_model(DemoConfig(), tmp_path / "shards", tmp_path / "run")
    cfg = apply_recipe(seen[0])
    # the demo's effective recipe before --recipe existed (adamw's defaults then: wd 1e-2)
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.warmup) == ("adamw", 4e-3, 1e-2, 0.25)
    assert (cfg.loss.mask, cfg.loss.depth) == ("bce_lovasz", "l1_ssi_grad")
    assert cfg.batch_size == 16 and cfg.stages == (Stage(64, 20),) and not cfg.augment
    assert cfg.val_every == 5


# --- 4: resolutions must be multiples of RES_MULTIPLE -----------------------------------------


def test_resolutions_not_multiples_of_16_are_refused(tmp_path: Path) -> None:
    assert RES_MULTIPLE == 16 and check_res(64) == 64
    with pytest.raises(DepthkitError, match="--res 65: must be a positive multiple of 16"):
        stages_from_options(65, 1, None)
    with pytest.raises(DepthkitError, match="--schedule: stage '65:1'.*multiple of 16"):
        parse_schedule("64:1,65:1")
    with pytest.raises(DepthkitError, match="multiple of 16"):
        TrainConfig(shards=tmp_path, stages=(Stage(65, 1),))


def test_cli_refuses_res_65_in_one_line(tmp_path: Path) -> None:
    run = _cli("--shards", str(tmp_path), "--res", "65", "-o", str(tmp_path / "run"))
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0
    assert "--res 65: must be a positive multiple of 16" in run.stderr


# --- 5: an existing run folder needs --resume or --overwrite ----------------------------------


def test_existing_run_folder_needs_resume_or_overwrite(tmp_path: Path, factory) -> None:
    cfg = config(tmp_path, stages=(Stage(32, 1),))
    fit(cfg, factory)
    run = tmp_path / "run"
    before = load_checkpoint(run / "last.pt")["meta"]["step"]
    with pytest.raises(DepthkitError, match=r"already holds a run \(last.pt, best.pt\); pass "
                       rf"--resume {run / 'last.pt'} to continue it or --overwrite"):
        fit(cfg, factory)
    assert len(_events(run)) == 1 and load_checkpoint(run / "last.pt")["meta"]["step"] == before
    fit(replace(cfg, overwrite=True, seed=1), factory)
    assert len(_events(run)) == 1  # the old event file went with the old checkpoints
    (run / "notes.txt").write_text("mine")
    fit(replace(cfg, overwrite=True), factory)
    assert (run / "notes.txt").read_text() == "mine"  # only depthkit's files are deleted
    with pytest.raises(DepthkitError, match="--overwrite would delete --resume"):
        fit(replace(cfg, overwrite=True, resume=run / "last.pt"), factory)


# --- 6: shards without a val split train without validation, said up front -------------------


def test_shards_without_val_train_without_validation(
    tmp_path: Path, shard_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shards = tmp_path / "shards"
    shutil.copytree(shard_root, shards)
    manifest = json.loads((shards / MANIFEST_NAME).read_text())
    manifest["counts"]["val"] = 0
    for files in manifest["files"].values():
        files["val"] = []
    (shards / MANIFEST_NAME).write_text(json.dumps(manifest))
    for idx in shards.glob("*/val-*"):
        idx.unlink()
    cfg = TrainConfig(shards=shards, out=tmp_path / "run", stages=(Stage(32, 1),), batch_size=8,
                      save_every=0, log_every=0, num_threads=1, augment=False)
    with caplog.at_level(logging.INFO):
        result = fit(cfg)
    assert "holds no val split: training without validation" in caplog.text
    assert result["epochs"] == 1 and (tmp_path / "run" / "last.pt").is_file()
    assert not (tmp_path / "run" / "best.pt").exists()


# --- 7: resuming a finished run; --model-option with --resume ---------------------------------


def test_resuming_a_finished_run_says_nothing_to_do(tmp_path: Path, factory) -> None:
    cfg = config(tmp_path, stages=(Stage(32, 1),))
    fit(cfg, factory)
    last = tmp_path / "run" / "last.pt"
    result = fit(replace(cfg, resume=last), factory)
    line = format_train_summary(result, replace(cfg, resume=last))
    assert line == (f"nothing to do: {last} already finished its schedule (1 epochs); raise "
                    "--epochs or change --schedule to train more")
    assert len(_events(tmp_path / "run")) == 1


def test_model_option_that_differs_from_the_checkpoint_is_refused(tmp_path: Path,
                                                                  factory) -> None:
    cfg = config(tmp_path, stages=(Stage(32, 1),), model="diffunet",
                 model_options={"widths": (8, 16, 24, 32), "stem": 8})
    fit(cfg, factory)
    last = tmp_path / "run" / "last.pt"
    with pytest.raises(DepthkitError, match="--model-option stem=16: --resume .* stem=8"):
        fit(replace(cfg, stages=(Stage(32, 2),), resume=last, model_options={"stem": 16}),
            factory)
    same = fit(replace(cfg, stages=(Stage(32, 2),), resume=last), factory)  # same options: fine
    assert same["epochs"] == 2


# --- 9: an image grid every epoch, even with --image-every 0 ----------------------------------


def test_image_grid_every_epoch(tmp_path: Path, factory) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fit(config(tmp_path, stages=(Stage(32, 2),), image_every=0), factory)
    events = EventAccumulator(str(tmp_path / "run" / "tb")).Reload()
    assert [e.step for e in events.Images("train/samples")] == [6, 12]  # 6 batches an epoch
