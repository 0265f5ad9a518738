"""Pool workers never outlive their run (depthkit.core.workers): kill -9 of `depthkit shard` or
`depthkit synth` ends the workers too, SIGTERM ends the run cleanly with exit 143, and the
rerun finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from depthkit.shard import verify_shards
from depthkit.shard.schema import MANIFEST_NAME
from depthkit.synth.dataset import SynthConfig, synthesize

RES = ("--res", "64,128,256")
BIG = SynthConfig(bgs=4, fgs=10, positions=5, res=64, seed=1)  # 400 samples: a few seconds
SYNTH_ARGS = ("--bgs", "4", "--fgs", "10", "--positions", "5", "--res", "64", "--seed", "1")


@pytest.fixture(scope="module")
def big_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("big") / "school"
    synthesize(root, BIG, workers=2, progress=False)
    return root


def _start(tmp_path: Path, *args: str, new_session: bool = False) -> subprocess.Popen:
    """`python -m depthkit ARGS`, output to files (a pipe would be held open by orphans)."""
    with open(tmp_path / "stdout.txt", "w") as out, open(tmp_path / "stderr.txt", "w") as err:
        return subprocess.Popen([sys.executable, "-m", "depthkit", *args], stdout=out,
                                stderr=err, start_new_session=new_session)


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                kids = {int(c) for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()}
            except OSError:
                continue
            todo += sorted(kids - found)
            found |= kids
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(what: str, cond: Callable[[], bool], deadline_s: float = 120) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


def _workers_busy(p: subprocess.Popen, out: Path, n: int) -> set[int]:
    """Wait until `p` has `n` descendants and has written its backgrounds (so the workers are
    converting shards); return the descendants."""
    _wait_for("the workers", lambda: len(_descendants(p.pid)) >= n)
    _wait_for("the backgrounds", lambda: p.poll() is not None
              or (out / "256" / "backgrounds.tar").is_file())
    assert p.poll() is None, "the run ended before the test could stop it"
    return _descendants(p.pid)


def _all_gone(pids: set[int]) -> None:
    """Every pid ends within a generous deadline (a leftover one is killed, then reported)."""
    try:
        _wait_for(f"workers {sorted(pids)} to exit", lambda: not any(map(_running, pids)), 15)
    finally:
        for pid in filter(_running, pids):
            os.kill(pid, signal.SIGKILL)


def _rerun_and_verify(src: Path, out: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "depthkit", "shard", str(src), "-o", str(out),
                        *RES, "--workers", "2", "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert verify_shards(out, workers=0, progress=False).ok


def test_kill9_of_shard_ends_its_workers(tmp_path: Path, big_source: Path) -> None:
    out = tmp_path / "out"
    p = _start(tmp_path, "shard", str(big_source), "-o", str(out), *RES, "--workers", "2",
               "--quiet")
    try:
        workers = _workers_busy(p, out, 2)
    finally:
        p.kill()
        p.wait()
    _all_gone(workers)
    assert p.returncode == -signal.SIGKILL
    assert not (out / MANIFEST_NAME).exists()  # killed mid-run
    _rerun_and_verify(big_source, out)


MESSAGES = {signal.SIGTERM: "error: terminated (SIGTERM); rerun the same command to resume",
            signal.SIGINT: "error: interrupted (Ctrl-C); rerun the same command to resume"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_shard_cleanly(tmp_path: Path, big_source: Path, sig: int) -> None:
    """SIGTERM to the main process (a scheduler), SIGINT to the whole group (Ctrl-C)."""
    out = tmp_path / "out"
    p = _start(tmp_path, "shard", str(big_source), "-o", str(out), *RES, "--workers", "2",
               "--quiet", new_session=True)
    try:
        workers = _workers_busy(p, out, 2)
        if sig == signal.SIGINT:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
        p.wait(timeout=120)
    finally:
        p.kill()
    _all_gone(workers)
    err = (tmp_path / "stderr.txt").read_text()
    assert p.returncode == 128 + sig, err
    assert err.strip() == MESSAGES[sig]  # one line: no traceback, no "leaked semaphore"
    assert not (out / MANIFEST_NAME).exists()
    _rerun_and_verify(big_source, out)


@pytest.mark.parametrize(("sig", "when"), [(signal.SIGKILL, "rendering"),
                                           (signal.SIGTERM, "rendering"),
                                           (signal.SIGTERM, "starting")])
def test_stopped_synth_leaves_no_workers_and_resumes(tmp_path: Path, sig: int,
                                                     when: str) -> None:
    out = tmp_path / "school"
    args = ("synth", str(out), *SYNTH_ARGS, "--workers", "2", "--quiet")
    p = _start(tmp_path, *args)
    try:
        if when == "starting":  # the first worker forked: a stop must not race their start
            _wait_for("a worker", lambda: len(_descendants(p.pid)) >= 1)
        else:  # the 2 pre-forked workers, then the first sample files
            _wait_for("the workers", lambda: len(_descendants(p.pid)) >= 2)
            _wait_for("a rendered file", lambda: p.poll() is not None
                      or any((out / "fg_bg").rglob("*.jpg")))
        workers = _descendants(p.pid)
        p.send_signal(sig)
        p.wait(timeout=120)
    finally:
        p.kill()
    _all_gone(workers)
    err = (tmp_path / "stderr.txt").read_text()
    if sig == signal.SIGTERM:
        assert p.returncode == 143, err
        assert err.strip() == MESSAGES[sig]  # one line: no traceback, no semaphore warning
    else:
        assert p.returncode == -signal.SIGKILL, "the run ended before the test could kill it"
    r = subprocess.run([sys.executable, "-m", "depthkit", *args], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sum(1 for _ in (out / "fg_bg").rglob("*.jpg")) == BIG.samples


WATCHED = """
import os, sys, time
import depthkit.core.workers as w
w._die_with_parent = lambda: None  # as where prctl is missing: the watchdog alone
owner = os.getpid()
if os.fork() == 0:
    w.init_worker(owner)
    print(os.getpid(), flush=True)
    time.sleep(60)
    os._exit(0)
time.sleep(60)
"""


def test_watchdog_alone_ends_an_orphaned_worker(tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-c", WATCHED], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(p.stdout.readline())
        assert _running(worker)
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    _all_gone({worker})
