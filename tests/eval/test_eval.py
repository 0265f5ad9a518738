"""eval, predict and demo end to end on a tiny trained checkpoint; predict's error paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthkit import cli
from depthkit.demo import DemoConfig, run_demo
from depthkit.eval.pictures import GRID_TITLES
from depthkit.shard.manifest import load_manifest, split_count

JSON_KEYS = ("mask_iou", "mask_dice", "depth_rmse", "depth_abs_rel", "depth_delta1",
             "depth_ssim", "samples")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    """The demo at toy size: 3 backgrounds (1 held out) x 3 fgs x 2 flips x 2 positions,
    two training steps. Gives shards, a checkpoint, metrics.json and grid.png."""
    cfg = DemoConfig(out=tmp_path_factory.mktemp("demo") / "out", bgs=3, fgs=3, fgs_per_bg=3,
                     positions=2, val_fraction=0.34, epochs=1, batch_size=4, max_steps=2,
                     workers=1, grid_samples=4)
    return run_demo(cfg, say=lambda line: None)


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str
            ) -> tuple[int, str, str]:
    """Run `depthkit ARGS` in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["depthkit", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as stop:
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def write_rgb(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def pair(tmp_path: Path, h: int = 50, w: int = 70, name: str = "x") -> tuple[Path, Path]:
    """A bg and an fgbg (a bright square pasted on it) of an odd, non-square size."""
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 255, (h, w, 3))
    fgbg = bg.copy()
    fgbg[h // 4: h // 2, w // 4: w // 2] = (250, 20, 20)
    (tmp_path / "bg").mkdir(exist_ok=True)
    (tmp_path / "fgbg").mkdir(exist_ok=True)
    return (write_rgb(tmp_path / "bg" / f"{name}.png", bg),
            write_rgb(tmp_path / "fgbg" / f"{name}.jpg", fgbg))


# ----------------------------------------------------------------------------- demo + eval


def test_demo_leaves_metrics_and_grid(demo) -> None:
    metrics = json.loads(demo.metrics_path.read_text())
    for key in JSON_KEYS:
        assert key in metrics, key
    shards = demo.checkpoint.parent.parent / "shards"
    assert metrics["samples"] == split_count(load_manifest(shards), "val") == 12
    for key in ("mask_iou", "mask_dice", "mask_acc", "depth_delta1", "depth_valid_fraction"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["depth_rmse"] > 0
    assert metrics["demo"]["timings"]["total_s"] > 0
    with Image.open(demo.grid_path) as grid:
        assert grid.mode == "RGB"
        cell = max(96, 64)
        assert grid.width >= len(GRID_TITLES) * cell
        assert grid.height >= 4 * cell  # 4 sample rows


def test_eval_cli_json_grid_and_limit(demo, tmp_path, monkeypatch, capsys) -> None:
    shards = demo.checkpoint.parent.parent / "shards"
    out_json, out_grid = tmp_path / "m.json", tmp_path / "g.png"
    code, out, err = run_cli(monkeypatch, capsys, "eval", "-c", str(demo.checkpoint),
                             "-s", str(shards), "--split", "train", "--json", str(out_json),
                             "--grid", str(out_grid), "--grid-samples", "3", "--limit", "5",
                             "--batch-size", "4")
    assert code == 0, err
    assert "mask IoU" in out and "depth RMSE" in out
    metrics = json.loads(out_json.read_text())
    assert metrics["samples"] == 5  # --limit cuts inside the second batch
    assert metrics["split"] == "train"
    with Image.open(out_grid) as grid:
        assert grid.height < 4 * 96  # 3 rows
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_eval_same_numbers_as_the_demo(demo, tmp_path, monkeypatch, capsys) -> None:
    shards = demo.checkpoint.parent.parent / "shards"
    code, _, err = run_cli(monkeypatch, capsys, "eval", "-c", str(demo.checkpoint), "-s",
                           str(shards), "--json", str(tmp_path / "m.json"))
    assert code == 0, err
    again = json.loads((tmp_path / "m.json").read_text())
    for key in JSON_KEYS:
        assert again[key] == pytest.approx(demo.metrics[key], rel=1e-6), key


def test_eval_model_at_another_resolution(demo, tmp_path, monkeypatch, capsys) -> None:
    shards = demo.checkpoint.parent.parent / "shards"
    code, _, err = run_cli(monkeypatch, capsys, "eval", "-c", str(demo.checkpoint), "-s",
                           str(shards), "--res", "32", "--json", str(tmp_path / "m.json"))
    assert code == 0, err
    m = json.loads((tmp_path / "m.json").read_text())
    assert (m["model_res"], m["shard_res"]) == (32, 64)  # metrics still against 64 px targets


@pytest.mark.parametrize("args, needle", [
    (["--shard-res", "128"], "--shard-res 128"),
    (["--res", "40"], "--res 40"),
])
def test_eval_bad_options(demo, monkeypatch, capsys, args, needle) -> None:
    shards = demo.checkpoint.parent.parent / "shards"
    code, _, err = run_cli(monkeypatch, capsys, "eval", "-c", str(demo.checkpoint), "-s",
                           str(shards), *args)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1


def test_eval_split_is_checked_while_parsing(demo, monkeypatch, capsys) -> None:
    """--split val|train is a choice: the parser refuses others (usage error, exit 2)."""
    code, _, err = run_cli(monkeypatch, capsys, "eval", "-c", str(demo.checkpoint), "-s", "x",
                           "--split", "test")
    assert code == 2 and "'test' is not one of 'val'" in " ".join(err.split())


# ----------------------------------------------------------------------------- predict


def test_predict_one_pair_any_size(demo, tmp_path, monkeypatch, capsys) -> None:
    bg, fgbg = pair(tmp_path)
    out = tmp_path / "out"
    code, _, err = run_cli(monkeypatch, capsys, "predict", "-c", str(demo.checkpoint),
                           "--bg", str(bg), "--fgbg", str(fgbg), "-o", str(out))
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["x_depth.png", "x_depth_color.png", "x_mask.png", "x_side.png"]
    with Image.open(out / "x_mask.png") as m:
        assert (m.size, m.mode) == ((70, 50), "L")  # back at the input's size
        assert set(np.unique(np.asarray(m))) <= {0, 255}
    with Image.open(out / "x_depth.png") as d:
        assert (d.size, d.mode) == ((70, 50), "L")
    with Image.open(out / "x_depth_color.png") as c:
        assert (c.size, c.mode) == ((70, 50), "RGB")
    with Image.open(out / "x_side.png") as s:
        assert s.height > 50 and s.width >= 4 * 70  # the pictures, titles and colour bar


def test_predict_folders_and_one_background(demo, tmp_path, monkeypatch, capsys) -> None:
    for name in ("a", "b"):
        bg, _ = pair(tmp_path, name=name)
    out = tmp_path / "out"
    code, _, err = run_cli(monkeypatch, capsys, "predict", "-c", str(demo.checkpoint),
                           "--bg", str(tmp_path / "bg"), "--fgbg", str(tmp_path / "fgbg"),
                           "-o", str(out))
    assert code == 0, err
    assert {p.name for p in out.glob("*_mask.png")} == {"a_mask.png", "b_mask.png"}
    out2 = tmp_path / "out2"
    code, _, err = run_cli(monkeypatch, capsys, "predict", "-c", str(demo.checkpoint),
                           "--bg", str(bg), "--fgbg", str(tmp_path / "fgbg"), "-o", str(out2))
    assert code == 0, err
    assert len(list(out2.glob("*_side.png"))) == 2


def predict_error(demo, tmp_path, monkeypatch, capsys, bg, fgbg, *extra, checkpoint=None,
                  mid_run=False) -> str:
    """Run a failing predict; the error is one line (only the last one when it comes mid-run,
    after the progress bar's line)."""
    code, _, err = run_cli(monkeypatch, capsys, "predict", "-c",
                           str(checkpoint or demo.checkpoint), "--bg", str(bg),
                           "--fgbg", str(fgbg), "-o", str(tmp_path / "out"), *extra)
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error:"), err
    assert mid_run or len(lines) == 1, err
    return lines[-1]


def test_predict_unreadable_image(demo, tmp_path, monkeypatch, capsys) -> None:
    bg, fgbg = pair(tmp_path)
    fgbg.write_bytes(b"not a jpeg")
    line = predict_error(demo, tmp_path, monkeypatch, capsys, bg, fgbg, mid_run=True)
    assert str(fgbg) in line
    assert not list((tmp_path / "out").glob("*.png"))


def test_predict_missing_background_in_folder(demo, tmp_path, monkeypatch, capsys) -> None:
    pair(tmp_path, name="a")
    _, lonely = pair(tmp_path, name="b")
    (tmp_path / "bg" / "b.png").unlink()
    line = predict_error(demo, tmp_path, monkeypatch, capsys, tmp_path / "bg", tmp_path / "fgbg")
    assert str(lonely) in line
    assert not (tmp_path / "out").exists()  # refused before any work


def test_predict_mismatched_scene(demo, tmp_path, monkeypatch, capsys) -> None:
    bg, fgbg = pair(tmp_path)
    write_rgb(bg, np.zeros((70, 50, 3)))  # portrait bg for a landscape fgbg
    line = predict_error(demo, tmp_path, monkeypatch, capsys, bg, fgbg, mid_run=True)
    assert str(fgbg) in line and str(bg) in line


def test_predict_missing_file_and_bad_res(demo, tmp_path, monkeypatch, capsys) -> None:
    bg, fgbg = pair(tmp_path)
    assert "nope.jpg" in predict_error(demo, tmp_path, monkeypatch, capsys, bg,
                                       tmp_path / "nope.jpg")
    assert "--res 30" in predict_error(demo, tmp_path, monkeypatch, capsys, bg, fgbg,
                                       "--res", "30")


def test_predict_corrupt_checkpoint(demo, tmp_path, monkeypatch, capsys) -> None:
    bg, fgbg = pair(tmp_path)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    line = predict_error(demo, tmp_path, monkeypatch, capsys, bg, fgbg, checkpoint=bad)
    assert str(bad) in line
