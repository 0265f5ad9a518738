"""`depthkit train` builds its options from TrainConfig's fields: same config as spelled out."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from depthkit import cli
from depthkit.model import parse_model_options
from depthkit.train import LossConfig, Stage, TrainConfig, parse_schedule


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch):
    """Run `depthkit train ARGS` with fit stubbed out; returns the TrainConfig it got."""
    import depthkit.train.summary as summary
    import depthkit.train.trainer as trainer

    got: list[TrainConfig] = []
    monkeypatch.setattr(trainer, "fit", lambda cfg, make_loader=None: got.append(cfg) or {})
    monkeypatch.setattr(summary, "format_train_summary", lambda result, cfg: "")

    def run(*args: str) -> TrainConfig:
        result = CliRunner().invoke(cli.app, ["train", *args])
        assert result.exit_code == 0, result.output
        return got.pop()

    return run


def test_defaults_are_the_configs(built) -> None:
    assert built() == TrainConfig(shards=Path("shards"), stages=(Stage(224, 1),))


def test_every_option_reaches_its_field(built) -> None:
    cfg = built(
        "--shards", "s", "-o", "o", "--schedule", "32:1,64:2", "--model", "diffunet",
        "--model-option", "stem=8", "--model-option", "widths=(8,16)", "--batch-size", "4",
        "--optimizer", "adamw", "--lr", "0.1", "--weight-decay", "0.2", "--step-size", "3",
        "--gamma", "0.5", "--mask-loss", "mse", "--depth-loss", "mse", "--mask-weight", "2",
        "--depth-weight", "3", "--amp", "--amp-dtype", "bf16", "--no-channels-last",
        "--compile", "--device", "cpu", "--no-augment", "--threads", "1", "--seed", "7",
        "--save-every", "1", "--log-every", "2", "--image-every", "3", "--val-every", "0",
        "--max-steps", "9", "--logdir", "l", "--resume", "r.pt")
    assert cfg == TrainConfig(
        shards=Path("s"), out=Path("o"), stages=parse_schedule("32:1,64:2"), model="diffunet",
        model_options=parse_model_options(["stem=8", "widths=(8,16)"]), batch_size=4,
        optimizer="adamw", lr=0.1, weight_decay=0.2, step_size=3, gamma=0.5,
        loss=LossConfig(mask="mse", depth="mse", mask_weight=2.0, depth_weight=3.0), amp=True,
        amp_dtype="bf16", channels_last=False, compile=True, device="cpu", augment=False,
        num_threads=1, seed=7, save_every=1, log_every=2, image_every=3, val_every=0,
        max_steps=9, logdir=Path("l"), resume=Path("r.pt"))


def test_res_and_epochs_make_one_stage(built) -> None:
    cfg = built("--res", "64", "--epochs", "3", "--channels-last")
    assert cfg.stages == (Stage(64, 3),) and cfg.channels_last is True
