"""`depthkit predict` and `depthkit eval` on a full disk: one line `error: disk full writing
<file>: ...`, exit 2, no temp file; after freeing space the same command writes everything."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from depthkit import cli
from depthkit.core.atomic import is_tmp_name


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run `depthkit ARGS` in-process; returns (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["depthkit", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    return code, capsys.readouterr().err


def no_temp(root: Path) -> bool:
    return not [p for p in root.rglob("*") if is_tmp_name(p.name)]


def test_predict_full_disk(tiny_checkpoint, tmp_path, monkeypatch, capsys, small_disk):
    rng = np.random.default_rng(0)
    for folder in ("bg", "fgbg"):
        (tmp_path / folder).mkdir()
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            tmp_path / folder / "x.png")
    out = tmp_path / "disk" / "pred"
    args = ("predict", "-c", str(tiny_checkpoint), "--bg", str(tmp_path / "bg"), "--fgbg",
            str(tmp_path / "fgbg"), "-o", str(out), "--device", "cpu")
    disk = small_disk(tmp_path / "disk", 4000)  # the first picture or two fit
    code, err = run_cli(monkeypatch, capsys, *args)
    last = err.strip().splitlines()[-1]  # after the progress bar
    assert code == 2
    assert last.startswith(f"error: disk full writing {out}/x_") and ".png: " in last
    assert "Traceback" not in err and no_temp(tmp_path)
    disk.undo()
    assert run_cli(monkeypatch, capsys, *args)[0] == 0
    assert len(list(out.iterdir())) == 4


def test_eval_full_disk(tiny_checkpoint, shard_root, tmp_path, monkeypatch, capsys, small_disk):
    disk = tmp_path / "disk"
    args = ("eval", "-c", str(tiny_checkpoint), "-s", str(shard_root), "--device", "cpu",
            "--json", str(disk / "m.json"), "--grid", str(disk / "grid.png"))
    small_disk(disk, 4000)  # the JSON fits, the picture grid does not
    code, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith(f"error: disk full writing {disk}/grid.png")
    assert "Traceback" not in err and no_temp(tmp_path)
    assert (disk / "m.json").is_file() and not (disk / "grid.png").exists()
