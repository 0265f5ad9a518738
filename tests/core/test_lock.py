"""One run per output folder (depthkit.core.lock): a second `depthkit shard`, `synth` or `train`
into a folder in use fails at once with a one-line error naming the first run, the first run
finishes untouched, and a lock left by a killed run never blocks a rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from depthkit.core.errors import DepthkitError
from depthkit.core.lock import LOCK_NAME, RunLock
from depthkit.shard import verify_shards

DEPTHKIT = [sys.executable, "-m", "depthkit"]
TINY_MODEL = ("--model", "diffunet", "--model-option", "widths=(8, 16, 24, 32)",
              "--model-option", "stem=8")


def _stale_lock(folder: Path) -> None:
    """The lock file a `kill -9`ed run leaves (its holder long gone)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps(
        {"pid": 2 ** 22 + 1, "started": "2020-01-01 00:00:00", "what": "shard",
         "argv": ["depthkit", "shard"]}))


def test_second_lock_fails_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with RunLock(out, "shard"):
        with pytest.raises(DepthkitError) as err, RunLock(out, "shard"):
            pass
        assert f"is in use by depthkit shard pid {os.getpid()}" in str(err.value)
        assert "\n" not in str(err.value)
    assert not (out / LOCK_NAME).exists()  # a clean exit leaves no lock file
    with RunLock(out, "train"):  # and the folder is free again
        pass


def test_lock_that_made_an_empty_folder_removes_it(tmp_path: Path) -> None:
    with pytest.raises(DepthkitError), RunLock(tmp_path / "new", "shard"):
        raise DepthkitError("failed before writing anything")
    assert not (tmp_path / "new").exists()


def test_stale_lock_file_does_not_block(tmp_path: Path) -> None:
    _stale_lock(tmp_path / "out")
    with RunLock(tmp_path / "out", "synth") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


HOLDER = """
import os, sys, time
from pathlib import Path
from depthkit.core.lock import RunLock
with RunLock(Path(sys.argv[1]), "shard"):
    if os.fork() == 0:  # like a pool worker: it must not keep the lock once the parent dies
        print(os.getpid(), flush=True)  # (after the at-fork handlers ran)
        time.sleep(60)
        os._exit(0)
    time.sleep(60)
"""


def test_lock_of_a_killed_run_is_free_though_its_fork_lives(tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE,
                         text=True)
    child = 0
    try:
        child = int(p.stdout.readline())
        with pytest.raises(DepthkitError, match=f"pid {p.pid}"), RunLock(out, "shard"):
            pass
        p.kill()
        p.wait()
        with RunLock(out, "shard"):  # no wait: the kernel dropped the dead holder's lock
            assert os.path.exists(f"/proc/{child}")  # though its forked child still runs
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
        if child:
            os.kill(child, signal.SIGKILL)


# --- two real runs into one folder: the first is paused (SIGSTOP) while it holds the lock ---


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([*DEPTHKIT, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _pause_when_locked(p: subprocess.Popen, folder: Path) -> None:
    """SIGSTOP `p` as soon as it holds the lock of `folder`."""
    end = time.monotonic() + 300
    while True:
        try:
            if json.loads((folder / LOCK_NAME).read_text())["pid"] == p.pid:
                break
        except (OSError, ValueError, KeyError):
            pass
        assert p.poll() is None, f"the first run ended first: {p.communicate()[1][-2000:]}"
        assert time.monotonic() < end
        time.sleep(0.002)
    p.send_signal(signal.SIGSTOP)


def _second_run_refused(first: subprocess.Popen, folder: Path, what: str,
                        args: list[str]) -> None:
    """Run `args` while `first` holds `folder`: a one-line error, exit 2; then let the first
    finish (exit 0, lock file gone)."""
    try:
        _pause_when_locked(first, folder)
        second = subprocess.run([*DEPTHKIT, *args], capture_output=True, text=True,
                                timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 2, second.stderr[-2000:]
    line = second.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("error: ") and f"in use by depthkit {what} pid {first.pid}" in line
    assert not (folder / LOCK_NAME).exists()


def test_two_shard_runs_into_one_folder(tmp_path: Path, synth_root: Path) -> None:
    out = tmp_path / "out"
    args = ["shard", str(synth_root), "-o", str(out), "--res", "32,64,128", "--shard-size",
            "8", "--workers", "2", "--quiet"]
    _second_run_refused(_start(args), out, "shard", args)
    assert verify_shards(out, workers=0, progress=False).ok


def test_shard_rerun_after_a_killed_run_is_not_blocked(tmp_path: Path,
                                                       synth_root: Path) -> None:
    out = tmp_path / "out"
    _stale_lock(out)  # all a run killed at once leaves in a new OUT
    r = subprocess.run([*DEPTHKIT, "shard", str(synth_root), "-o", str(out), "--res", "32",
                        "--workers", "0", "--quiet"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert verify_shards(out, workers=0, progress=False).ok
    assert not (out / LOCK_NAME).exists()


def test_two_synth_runs_into_one_folder(tmp_path: Path) -> None:
    out = tmp_path / "school"
    args = ["synth", str(out), "--bgs", "2", "--fgs", "10", "--positions", "2", "--res", "64",
            "--workers", "1", "--quiet"]
    _second_run_refused(_start(args), out, "synth", args)
    assert sum(1 for _ in (out / "fg_bg").rglob("*.jpg")) == 2 * 10 * 2 * 2


def test_two_train_runs_into_one_folder(tmp_path: Path, shard_root: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--shards", str(shard_root), "--res", "32", "--epochs", "1",
            "--batch-size", "4", "--optimizer", "adamw", "-o", str(run), "--threads", "1",
            "--save-every", "0", "--log-every", "0", "--image-every", "0", "--val-every", "0",
            *TINY_MODEL]
    _second_run_refused(_start(args), run, "train", args)
    assert (run / "last.pt").is_file()


def test_train_over_a_stale_lock_runs(tmp_path: Path) -> None:
    import torch

    from depthkit.loader.memory import tensor_loader_factory
    from depthkit.train import Stage, TrainConfig, fit

    data = {"bg": torch.randn(8, 3, 32, 32), "fgbg": torch.randn(8, 3, 32, 32),
            "mask": (torch.rand(8, 1, 32, 32) > 0.5).float(), "depth": torch.rand(8, 1, 32, 32)}
    stats = {"mean": [0.0] * 3, "std": [1.0] * 3}
    cfg = TrainConfig(shards=tmp_path / "unused", out=tmp_path / "run", stages=(Stage(32, 1),),
                      batch_size=8, optimizer="adamw", save_every=0, log_every=0,
                      image_every=0, val_every=0, device="cpu", model="diffunet",
                      model_options={"widths": (8, 16, 24, 32), "stem": 8})
    factory = tensor_loader_factory(data, data, {"bg": stats, "fgbg": stats})
    _stale_lock(cfg.out)
    assert fit(cfg, factory)["epochs"] == 1
    with RunLock(cfg.out, "train"), pytest.raises(DepthkitError, match="in use by"):
        fit(replace(cfg, out=cfg.out), factory)
