"""A run whose loss turns NaN stops with one line naming the epoch, the step and the last good
checkpoint, and never saves the diverged weights."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import depthkit.train.trainer as trainer_module
from depthkit.core.errors import DepthkitError
from depthkit.loader.memory import tensor_loader_factory
from depthkit.model.checkpoint import load_checkpoint
from depthkit.train import fit


def _patch_criterion(monkeypatch: pytest.MonkeyPatch, change) -> None:
    """Wrap the training criterion: at call n (from 1) its loss becomes change(n, loss, out)."""
    build = trainer_module.build_criterion

    def patched(cfg):
        criterion, calls = build(cfg), [0]

        def run(out, batch):
            loss, parts = criterion(out, batch)
            calls[0] += 1
            return change(calls[0], loss, out), parts

        return run

    monkeypatch.setattr(trainer_module, "build_criterion", patched)


@pytest.fixture
def nan_at_step(monkeypatch: pytest.MonkeyPatch):
    """Make the training criterion return NaN (with its graph, so backward runs) at call k."""

    def arm(k: int) -> None:
        _patch_criterion(monkeypatch, lambda n, loss, out: loss * math.nan if n == k else loss)

    return arm


def _finite(path: Path) -> bool:
    ck = load_checkpoint(path)
    return all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_nan_before_a_save_names_the_last_good_checkpoint(
    tmp_path: Path, nan_at_step, toy_config, toy_data
) -> None:
    nan_at_step(5)  # the save at step 6 finds it
    with pytest.raises(DepthkitError) as err:
        fit(toy_config(tmp_path, save_every=2), tensor_loader_factory(toy_data()))
    text = str(err.value)
    assert "\n" not in text
    assert "non-finite training loss at epoch 1 step 6" in text
    assert f"last good checkpoint: {tmp_path / 'last.pt'} (step 4)" in text
    meta = load_checkpoint(tmp_path / "last.pt")["meta"]
    assert meta["step"] == 4 and _finite(tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".pt") == ["last.pt"]


def test_nan_is_caught_at_the_next_log_step(
    tmp_path: Path, nan_at_step, toy_config, toy_data
) -> None:
    nan_at_step(2)
    with pytest.raises(DepthkitError, match=r"non-finite training loss \(nan\) at epoch 1 "
                       r"step 3; not saved; no checkpoint written yet"):
        fit(toy_config(tmp_path, log_every=3), tensor_loader_factory(toy_data()))
    assert not (tmp_path / "last.pt").exists()


def test_nan_is_caught_at_the_epoch_end_without_log_steps(
    tmp_path: Path, nan_at_step, toy_config, toy_data
) -> None:
    nan_at_step(8)  # in epoch 2: epoch 1 ended well and wrote last.pt
    with pytest.raises(DepthkitError, match=r"loss \(nan\) at epoch 2 step 12; not saved; "
                       r"last good checkpoint: .*last.pt \(step 6\)"):
        fit(toy_config(tmp_path), tensor_loader_factory(toy_data()))
    assert load_checkpoint(tmp_path / "last.pt")["meta"]["step"] == 6
    assert _finite(tmp_path / "last.pt")


def test_a_clean_run_is_not_stopped(tmp_path: Path, toy_config, toy_data) -> None:
    result = fit(toy_config(tmp_path, log_every=1, save_every=1),
                 tensor_loader_factory(toy_data()))
    assert result["steps"] == 12 and _finite(tmp_path / "last.pt")


def test_cli_with_a_huge_lr_stops_with_one_line(tmp_path: Path, shard_root: Path) -> None:
    shards = tmp_path / "shards"
    shutil.copytree(shard_root, shards)
    out = tmp_path / "run"
    run = subprocess.run(
        [sys.executable, "-m", "depthkit", "train", "--shards", str(shards), "-o", str(out),
         "--res", "32", "--epochs", "2", "--batch-size", "4", "--optimizer", "sgd",
         "--lr", "1e30", "--threads", "1", "--model", "diffunet",
         "--model-option", "widths=(8, 16, 24, 32)", "--model-option", "stem=8",
         "--save-every", "1", "--log-every", "0", "--val-every", "1"],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: non-finite") and " at epoch 1 step " in last
    assert f"last good checkpoint: {out / 'last.pt'}" in last
    assert "Traceback" not in run.stderr
    assert _finite(out / "last.pt")


def test_steps_the_grad_scaler_skips_are_not_an_error(
    tmp_path: Path, monkeypatch, toy_config, toy_data
) -> None:
    # as with fp16 on a GPU: at steps 2 and 3 the gradients are NaN while the loss is finite
    # (0 * d sqrt(x)/dx at 0), so the enabled grad scaler skips them; that must not stop the run
    scalers, real = [], torch.amp.GradScaler

    def enabled(device: str, enabled: bool = True) -> torch.amp.GradScaler:
        scalers.append(real(device, enabled=True))
        return scalers[-1]

    def nan_grads(n: int, loss: torch.Tensor, out) -> torch.Tensor:
        return loss + 0.0 * torch.sqrt(out["mask"].mean() * 0.0) if n in (2, 3) else loss

    monkeypatch.setattr(trainer_module.torch.amp, "GradScaler", enabled)
    _patch_criterion(monkeypatch, nan_grads)
    result = fit(toy_config(tmp_path, log_every=1, save_every=1),
                 tensor_loader_factory(toy_data()))
    assert result["steps"] == 12 and _finite(tmp_path / "last.pt")
    assert scalers[0].get_scale() == 2.0**16 / 4  # it skipped the two steps (backoff 0.5 each)
