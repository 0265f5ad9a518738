"""Training loop: losses go down, resume reproduces an uninterrupted run, bad input errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from depthkit.core.errors import DepthkitError
from depthkit.loader.memory import tensor_loader_factory
from depthkit.model import count_parameters, create_model, parse_model_options
from depthkit.model.checkpoint import (
    capture_rng,
    load_checkpoint,
    load_model,
    restore_rng,
    save_checkpoint,
)
from depthkit.shard.schema import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME
from depthkit.train import LossConfig, Stage, TrainConfig, build_criterion, fit, parse_schedule

STATS = {"mean": [0.5] * 3, "std": [0.25] * 3}
NORM = {"bg": STATS, "fgbg": STATS}


def tiny_composites(n: int, res: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Smooth random backgrounds with one pasted ellipse each; mask and a depth ramp."""
    g = torch.Generator().manual_seed(seed)
    bg = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(res, res), mode="bilinear")
    fg = F.interpolate(torch.rand(n, 3, 3, 3, generator=g), size=(res, res), mode="bilinear")
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, res), torch.linspace(-1, 1, res), indexing="ij")
    c = torch.rand(n, 2, 1, 1, generator=g) - 0.5
    r = torch.rand(n, 2, 1, 1, generator=g) * 0.3 + 0.2
    mask = ((((xx - c[:, :1]) / r[:, :1]) ** 2 + ((yy - c[:, 1:]) / r[:, 1:]) ** 2) < 1)
    mask = mask.float()
    fgbg = bg * (1 - mask) + fg * mask
    ramp = torch.linspace(1, 0, res).view(1, 1, res, 1).expand(n, 1, res, res)
    depth = ramp * (1 - mask) + 0.1 * mask
    return {"bg": (bg - 0.5) / 0.25, "fgbg": (fgbg - 0.5) / 0.25, "mask": mask, "depth": depth}


@pytest.fixture(scope="module")
def data() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return tiny_composites(48, seed=1), tiny_composites(8, seed=2)


def config(tmp_path: Path, **kw) -> TrainConfig:
    base = TrainConfig(shards=tmp_path / "unused", out=tmp_path / "run",
                       stages=(Stage(32, 2),), batch_size=8, optimizer="adamw",
                       save_every=0, log_every=0, image_every=0, val_every=0)
    return replace(base, **kw)


def test_few_steps_lower_both_losses(tmp_path: Path, data) -> None:
    train, val = data
    factory = tensor_loader_factory(train, val, NORM)
    crit = build_criterion(LossConfig())
    torch.manual_seed(0)
    cfg = config(tmp_path, stages=(Stage(32, 3),), lr=5e-3, log_every=4, image_every=4)
    result = fit(cfg, factory)
    hist = result["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["train_mask"] < 0.8 * hist[0]["train_mask"]
    assert hist[-1]["train_depth"] < 0.8 * hist[0]["train_depth"]
    # and the saved model is better than a fresh one on held-out data
    model, meta = load_model(tmp_path / "run" / "last.pt")
    fresh = type(model)(**meta["model_kwargs"]).eval()
    with torch.no_grad():
        _, trained_parts = crit(model(val["bg"], val["fgbg"]), val)
        _, fresh_parts = crit(fresh(val["bg"], val["fgbg"]), val)
    assert trained_parts["mask"] < fresh_parts["mask"]
    assert trained_parts["depth"] < fresh_parts["depth"]
    assert meta["epoch"] == 3 and meta["res"] == 32 and meta["norm"] == NORM
    events = list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    assert events and sum(e.stat().st_size for e in events) > 1000  # scalars + images


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_resume_mid_epoch_matches_uninterrupted_run(tmp_path: Path, data) -> None:
    train, val = data
    factory = tensor_loader_factory(train, val, NORM)
    straight = config(tmp_path / "a")
    fit(straight, factory)
    # stop after 9 steps (6 batches per epoch: 3 batches into epoch 2), then resume
    interrupted = config(tmp_path / "b", max_steps=9)
    first = fit(interrupted, factory)
    assert first["steps"] == 9 and first["epochs"] == 1
    ck = load_checkpoint(tmp_path / "b" / "run" / "last.pt")
    assert ck["meta"]["batch_in_epoch"] == 3
    resumed = fit(config(tmp_path / "b", resume=tmp_path / "b" / "run" / "last.pt"), factory)
    assert resumed["steps"] == 12 and resumed["epochs"] == 2
    a = _weights(tmp_path / "a" / "run" / "last.pt")
    b = _weights(tmp_path / "b" / "run" / "last.pt")
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k
    # a different run really differs (the comparison above could fail)
    other = fit(config(tmp_path / "c", seed=1), factory)
    assert other["steps"] == 12
    c = _weights(tmp_path / "c" / "run" / "last.pt")
    assert any(not torch.allclose(a[k].float(), c[k].float()) for k in a)


def test_resume_at_new_resolution_starts_a_fresh_stage(tmp_path: Path, data) -> None:
    train, val = data
    factory = tensor_loader_factory(train, val, NORM)
    fit(config(tmp_path, stages=(Stage(32, 1),), optimizer="sgd", lr=0.01), factory)
    ck = tmp_path / "run" / "last.pt"
    result = fit(config(tmp_path, stages=(Stage(64, 1),), optimizer="sgd", lr=0.01, resume=ck),
                 factory)
    assert result["epochs"] == 1 and result["steps"] == 6 + 6
    meta = load_checkpoint(ck)["meta"]
    assert meta["res"] == 64 and meta["epoch"] == 1


def test_schedule_runs_stages_in_order(tmp_path: Path, data) -> None:
    train, val = data
    result = fit(config(tmp_path, stages=parse_schedule("32:1,64:1"), val_every=0),
                 tensor_loader_factory(train, val, NORM))
    assert [h["res"] for h in result["history"]] == [32, 64]


def test_corrupt_checkpoint_is_a_one_line_error(tmp_path: Path, data) -> None:
    train, val = data
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(DepthkitError, match="corrupt or unreadable checkpoint") as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value)
    # a truncated real checkpoint
    fit(config(tmp_path, stages=(Stage(32, 1),), val_every=0), tensor_loader_factory(train))
    good = (tmp_path / "run" / "last.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(DepthkitError, match="corrupt"):
        fit(config(tmp_path, resume=cut), tensor_loader_factory(train))
    # a torch file that is not ours
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(DepthkitError, match="not a depthkit checkpoint"):
        load_model(other)


def test_checkpoint_of_another_model_is_refused(tmp_path: Path, data) -> None:
    train, _ = data
    fit(config(tmp_path, stages=(Stage(32, 1),), val_every=0), tensor_loader_factory(train))
    with pytest.raises(DepthkitError, match="holds model 'diffunet'"):
        fit(config(tmp_path, model="unetexp", resume=tmp_path / "run" / "last.pt"),
            tensor_loader_factory(train))


def test_save_is_atomic_and_rng_roundtrips(tmp_path: Path) -> None:
    rng = capture_rng()
    path = tmp_path / "ck" / "x.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "meta": {"epoch": 0}, "rng": rng})
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.pt"]  # no temp file left
    loaded = load_checkpoint(path)  # weights_only=True load of the RNG states
    expected = (torch.rand(3), __import__("numpy").random.rand(), __import__("random").random())
    restore_rng(loaded["rng"])
    again = (torch.rand(3), __import__("numpy").random.rand(), __import__("random").random())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]


def test_missing_shard_folder_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DepthkitError, match="shard folder not found"):
        fit(config(tmp_path, shards=tmp_path / "nope"))


def test_missing_resolution_is_a_one_line_error(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    entry = {"tar": "64/train-000000.tar", "index": "64/train-000000.idx", "samples": 1}
    manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "resolutions": [64],
                "files": {"64": {"backgrounds": entry, "train": [entry], "val": [entry]}},
                "counts": {"train": 1, "val": 1}}
    (shards / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(DepthkitError, match="no 128 px copy"):
        fit(config(tmp_path, shards=shards, stages=parse_schedule("64:1,128:1")))


def test_cli_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    run = subprocess.run([sys.executable, "-m", "depthkit", "train", "--shards",
                          str(tmp_path / "missing"), "--resume", str(bad)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "shard folder not found" in run.stderr


@pytest.mark.parametrize("item", ["widths", "=3", "stem=x", "stem=(1,"])
def test_bad_model_option_is_refused(item: str) -> None:
    with pytest.raises(DepthkitError, match="--model-option"):
        parse_model_options([item])


def test_model_options_parse_literals() -> None:
    assert parse_model_options(["widths=(8,16)", "reduce=2", "diff=False"]) == {
        "widths": (8, 16), "reduce": 2, "diff": False}


@pytest.mark.parametrize("text", ["64", "64:0", "63:2", "a:b", "64:5,"])
def test_bad_schedule_is_refused(text: str) -> None:
    with pytest.raises(DepthkitError, match="--schedule"):
        parse_schedule(text)


# --- with real shards (tests/conftest.py: shard_root, 22 train + 2 val samples at 32/64 px) ---


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "depthkit", "train", *args],
                          capture_output=True, text=True, timeout=600)


def test_cli_trains_on_shards(tmp_path: Path, shard_root: Path) -> None:
    out = tmp_path / "run"
    run = _cli("--shards", str(shard_root), "--res", "32", "--epochs", "2", "--batch-size", "4",
               "--optimizer", "adamw", "-o", str(out), "--log-every", "1", "--image-every", "2",
               "--save-every", "3", "--threads", "1", "--model", "diffunet",
               "--model-option", "widths=(8, 16, 24, 32)", "--model-option", "stem=8")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "trained 2 epoch(s)" in run.stderr
    model, meta = load_model(out / "last.pt")
    assert meta["model_kwargs"]["widths"] == [8, 16, 24, 32] and meta["model_kwargs"]["stem"] == 8
    assert count_parameters(model) == count_parameters(
        create_model("diffunet", widths=(8, 16, 24, 32), stem=8))
    assert meta["epoch"] == 2 and meta["res"] == 32 and meta["step"] == 10  # 22 // 4 = 5 a rank
    manifest = json.loads((shard_root / MANIFEST_NAME).read_text())
    assert meta["norm"]["fgbg"]["mean"] == pytest.approx(manifest["stats"]["fgbg"]["mean"])
    assert "mask_iou" in meta["val"] and (out / "best.pt").is_file()
    assert not model.training
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb")).Reload()
    tags = events.Tags()
    assert {"train/loss_mask", "train/loss_depth", "train/lr", "train/samples_per_s",
            "val/mask_iou", "val/depth_rmse"} <= set(tags["scalars"])
    assert "train/samples" in tags["images"]


def test_cli_missing_resolution_is_one_line(tmp_path: Path, shard_root: Path) -> None:
    run = _cli("--shards", str(shard_root), "--schedule", "32:1,128:1", "-o", str(tmp_path))
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "no 128 px copy" in run.stderr
    assert not (tmp_path / "last.pt").exists()


@pytest.mark.parametrize("augment", [False, True], ids=["plain", "augmented"])
def test_shard_run_resumes_mid_epoch_like_an_uninterrupted_one(
    tmp_path: Path, shard_root: Path, augment: bool
) -> None:
    """The DALI loader restores its pipeline checkpoint: the same batches, augmentations
    included, as the uninterrupted run's."""
    base = TrainConfig(shards=shard_root, stages=(Stage(32, 2),), batch_size=4,
                       optimizer="adamw", save_every=0, log_every=0, image_every=0,
                       val_every=0, num_threads=1, augment=augment, device="cpu")
    fit(replace(base, out=tmp_path / "a"))
    first = fit(replace(base, out=tmp_path / "b", max_steps=7))  # 5 batches/epoch: 2 into #2
    assert first["steps"] == 7
    (state,) = load_checkpoint(tmp_path / "b" / "last.pt")["loader"]["ranks"]
    assert (state["epoch"], state["batch"]) == (1, 2) and state["dali"]  # the pipeline's own
    fit(replace(base, out=tmp_path / "b", resume=tmp_path / "b" / "last.pt"))
    a, b = _weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt")
    assert load_checkpoint(tmp_path / "b" / "last.pt")["meta"]["step"] == 10
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k


def test_amp_on_cpu_uses_bf16_and_still_learns(tmp_path: Path, data) -> None:
    from depthkit.train.runtime import pick_amp_dtype

    assert pick_amp_dtype(TrainConfig(shards=tmp_path, amp=True), torch.device("cpu")) is (
        torch.bfloat16)
    with pytest.raises(DepthkitError, match="fp16 needs CUDA"):
        pick_amp_dtype(TrainConfig(shards=tmp_path, amp=True, amp_dtype="fp16"),
                       torch.device("cpu"))
    train, val = data
    result = fit(config(tmp_path, amp=True, lr=5e-3),
                 tensor_loader_factory(train, val, NORM))
    first, last = result["history"][0], result["history"][-1]
    assert math.isfinite(last["train_loss"]) and last["train_loss"] < first["train_loss"]
