"""CLI conventions: --version, choices checked while parsing, plain bool flags, -o/-s/-j on
every command (old spellings kept), --quiet everywhere, quiet non-zero torchrun ranks."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from depthkit import cli
from depthkit.core.errors import DepthkitError
from depthkit.core.version import __version__


def invoke(*args: str):
    return CliRunner().invoke(cli.app, list(args))


@pytest.fixture(autouse=True)
def _restore_logging():
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list:
    """`depthkit train` with fit stubbed: the configs it was called with."""
    import depthkit.train.summary as summary
    import depthkit.train.trainer as trainer

    got: list = []
    monkeypatch.setattr(trainer, "fit", lambda cfg, make_loader=None: got.append(cfg) or {})
    monkeypatch.setattr(summary, "format_train_summary", lambda result, cfg: "")
    return got


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"depthkit {__version__}"


@pytest.mark.parametrize("args", [
    ("train", "--model", "nope"), ("train", "--optimizer", "adam"),
    ("train", "--mask-loss", "dice"), ("train", "--depth-loss", "l2"),
    ("train", "--amp-dtype", "fp8"), ("train", "--recipe", "fast"),
    ("eval", "-c", "x.pt", "-s", "s", "--split", "test"),
    ("shard", "src", "--split", "by-room"), ("synth", "-o", "x", "--archive", "rar"),
])
def test_choices_are_checked_while_parsing(args: tuple[str, ...], trained: list) -> None:
    result = invoke(*args)
    assert result.exit_code == 2 and "is not one of" in result.output
    assert not trained  # refused before any work


def test_help_lists_the_choices_and_shows_flags_without_a_metavar() -> None:
    text = invoke("train", "--help").output
    for name in ("diffunet-nodiff", "unetexp", "adamw", "bce_lovasz", "l1_ssim_grad",
                 "original", "bf16"):
        assert name in text
    quiet = next(line for line in text.splitlines() if "--quiet" in line)
    assert "<bool>" not in quiet
    assert "7z|zip" in invoke("synth", "--help").output
    assert "random|by-bg" in invoke("shard", "--help").output
    assert "val|train" in invoke("eval", "--help").output


def test_choice_lists_match_the_registries() -> None:
    from depthkit.model.registry import MODEL_NAMES
    from depthkit.train import config, losses, optim

    assert config.MODEL_CHOICES == MODEL_NAMES
    assert set(config.OPTIMIZER_CHOICES) == set(optim.OPTIMIZERS)
    assert config.MASK_LOSS_CHOICES == losses.MASK_LOSSES
    assert config.DEPTH_LOSS_CHOICES == losses.DEPTH_LOSSES


def test_a_value_after_a_flag_is_named_not_taken_for_a_path(tmp_path: Path,
                                                            monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (("shard", "src", "--quiet", "true"), ("synth", "-o", "x", "--quiet", "true"),
                 ("verify", "--quiet", "false")):
        result = invoke(*args)
        assert isinstance(result.exception, DepthkitError), args
        assert "take no value" in str(result.exception)


def test_synth_out_as_option_or_deprecated_positional(monkeypatch, tmp_path: Path) -> None:
    import depthkit.synth as synth

    got: list[Path] = []

    def fake(out, cfg, workers, progress):
        got.append((Path(out), workers, progress))
        raise SystemExit(0)

    monkeypatch.setattr(synth, "synthesize", fake)
    invoke("synth", "-o", str(tmp_path / "a"), "-j", "3", "--quiet")
    invoke("synth", "--out", str(tmp_path / "b"), "--workers", "1")
    invoke("synth", str(tmp_path / "c"))
    assert got[:2] == [(tmp_path / "a", 3, False), (tmp_path / "b", 1, True)]
    assert got[2][0] == tmp_path / "c"
    assert "Deprecated: use -o/--out" in invoke("synth", "--help").output
    assert isinstance(invoke("synth").exception, DepthkitError)  # no output folder at all


def test_verify_shards_as_option_positional_or_default(monkeypatch, tmp_path: Path) -> None:
    import depthkit.shard as shard

    got: list = []

    def fake(shards, workers, progress):
        got.append((Path(shards), workers, progress))
        raise SystemExit(0)

    monkeypatch.setattr(shard, "verify_shards", fake)
    invoke("verify", "-s", "a", "-j", "0", "--quiet")
    invoke("verify", "--shards", "b", "--workers", "2")
    invoke("verify", "c")
    invoke("verify", "--no-quiet", "-j", "1")
    assert got == [(Path("a"), 0, False), (Path("b"), 2, True), (Path("c"), got[2][1], True),
                   (Path("shards"), 1, True)]


@pytest.mark.parametrize("flag", ["--workers", "-j", "--threads"])
def test_train_workers_and_its_old_spelling(flag: str, trained: list) -> None:
    assert invoke("train", "-s", "s", flag, "5").exit_code == 0
    assert trained[-1].num_threads == 5 and trained[-1].shards == Path("s")


def test_shard_workers_short_flag(monkeypatch) -> None:
    import depthkit.shard as shard

    got: list = []
    monkeypatch.setattr(shard, "write_shards", lambda src, cfg: got.append(cfg) or
                        (_ for _ in ()).throw(SystemExit(0)))
    invoke("shard", "src", "-j", "0")
    invoke("shard", "src", "--workers", "3")
    assert [c.workers for c in got] == [0, 3]


def test_train_quiet_and_other_ranks_print_no_progress(trained: list, monkeypatch) -> None:
    """--quiet reaches TrainConfig.progress; other ranks log warnings only (their bars are off
    because the trainer draws one on rank 0 alone)."""
    assert invoke("train").exit_code == 0 and trained[-1].progress
    assert logging.getLogger().level == logging.INFO
    assert invoke("train", "--quiet").exit_code == 0 and not trained[-1].progress
    monkeypatch.setenv("RANK", "1")
    assert invoke("train").exit_code == 0
    assert logging.getLogger().level == logging.WARNING  # loader, process-group lines: rank 0


def test_eval_predict_demo_take_quiet() -> None:
    for cmd in ("train", "eval", "predict", "demo", "synth", "shard", "verify"):
        assert "--quiet" in invoke(cmd, "--help").output, cmd


def test_demo_device_defaults_to_cpu(monkeypatch) -> None:
    import depthkit.demo as demo

    got: list = []
    monkeypatch.setattr(demo, "run_demo", lambda cfg, say: got.append(cfg) or
                        (_ for _ in ()).throw(SystemExit(0)))
    invoke("demo", "--quiet")
    invoke("demo", "--device", "cuda")
    assert [c.device for c in got] == ["cpu", "cuda"]
    assert [c.progress for c in got] == [False, True]  # --quiet reaches synth, shard, train


def test_train_summary_does_not_repeat_the_epoch_lines(tmp_path: Path) -> None:
    from depthkit.train import TrainConfig
    from depthkit.train.summary import format_train_summary

    record = {"epoch": 1, "res": 32, "train_loss": 1.5, "samples_per_s": 10.0}
    text = format_train_summary({"epochs": 1, "steps": 2, "seconds": 1.0, "params": 9,
                                 "history": [record]}, TrainConfig(shards=tmp_path,
                                                                   out=tmp_path))
    assert "train_loss" not in text  # logged once, when the epoch ended
