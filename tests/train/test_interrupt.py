"""Ctrl-C and SIGTERM during training: last.pt at the step reached, the resume command, exit
130 / 143, and a resumed run that ends with the weights of an uninterrupted one."""

from __future__ import annotations

import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from depthkit.loader.batches import LoaderRequest
from depthkit.loader.memory import tensor_loader_factory
from depthkit.model.checkpoint import load_checkpoint
from depthkit.train import fit
from depthkit.train.interrupt import Interrupted, StopSignals, resume_command

from .conftest import LoaderWrapper


class SignalAt(LoaderWrapper):
    """A training loader that raises `signum` in this process while handing out batch `at`
    (counted from 1 over all epochs): as if the user pressed Ctrl-C during that step."""

    def __init__(self, loader, at: int, signum: int) -> None:
        super().__init__(loader)
        self.at, self.signum, self.count = at, signum, 0

    def __iter__(self):
        for batch in self.loader:
            self.count += 1
            if self.count == self.at:
                signal.raise_signal(self.signum)
            yield batch


def _signalling_factory(data: dict[str, torch.Tensor], at: int, signum: int = signal.SIGINT):
    base = tensor_loader_factory(data)

    def make(req: LoaderRequest):
        loader = base(req)
        return SignalAt(loader, at, signum) if req.train else loader

    return make


def test_first_signal_sets_the_flag_second_sigint_raises_and_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), StopSignals(announce=False) as stop:
        signal.raise_signal(signal.SIGTERM)
        assert stop.signum == signal.SIGTERM  # no exception: training finishes its step
        signal.raise_signal(signal.SIGTERM)  # a repeated SIGTERM (Slurm + torchrun) is ignored
        assert stop.signum == signal.SIGTERM
        signal.raise_signal(signal.SIGINT)  # Ctrl-C again: quit at once
        pytest.fail("a second signal that is SIGINT must raise KeyboardInterrupt")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_an_ignored_sigint_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a `cmd &` job of a script
    try:
        with StopSignals(announce=False) as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
            assert stop.signum is None
    finally:
        signal.signal(signal.SIGINT, previous)


def test_resume_command_repeats_the_command_line_with_resume_replaced() -> None:
    args = ["train", "--shards", "s", "--model-option", "widths=(8, 16)", "--resume", "old.pt",
            "--resume=older.pt", "-o", "run dir"]
    expected_args = ("train --shards s --model-option 'widths=(8, 16)' -o 'run dir' "
                     "--resume 'run dir/last.pt'")
    ck = Path("run dir/last.pt")
    main = "/x/depthkit/__main__.py"
    assert resume_command(ck, [main, *args], ["python3", "-m", "depthkit", *args], {}) == (
        f"python3 -m depthkit {expected_args}")
    assert resume_command(ck, ["/nowhere/bin/depthkit", *args], [], {}) == (
        f"/nowhere/bin/depthkit {expected_args}")
    torchrun = resume_command(ck, [main, *args], ["python", "-u", "-m", "depthkit", *args],
                              {"TORCHELASTIC_RUN_ID": "1"})
    assert torchrun.startswith("torchrun ") and torchrun.endswith(f"-m depthkit {expected_args}")


@pytest.mark.parametrize("at", [9, 6])  # mid-epoch (3 batches into epoch 2); an epoch's last
def test_interrupted_then_resumed_run_equals_an_uninterrupted_one(
    tmp_path: Path, at: int, toy_config, toy_data
) -> None:
    fit(toy_config(tmp_path / "a"), tensor_loader_factory(toy_data()))
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as stop:
        fit(toy_config(tmp_path / "b"), _signalling_factory(toy_data(), at))
    assert signal.getsignal(signal.SIGINT) is handler  # fit restored the handler it found
    err = stop.value
    assert (err.signum, err.step, err.exit_code) == (signal.SIGINT, at, 130)
    assert err.epoch == (at - 1) // 6 + 1 and err.checkpoint == tmp_path / "b" / "last.pt"
    meta = load_checkpoint(err.checkpoint)["meta"]
    assert (meta["step"], meta["epoch"], meta["batch_in_epoch"]) == (at, (at - 1) // 6,
                                                                     (at - 1) % 6 + 1)
    mid = load_checkpoint(err.checkpoint)["model"]
    resumed = fit(toy_config(tmp_path / "b", resume=err.checkpoint),
                  tensor_loader_factory(toy_data()))
    assert resumed["steps"] == 12 and resumed["epochs"] == 2
    a = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], mid[k]) for k in a)  # the comparison above can fail


def test_sigterm_in_process_raises_interrupted_with_143(
    tmp_path: Path, toy_config, toy_data
) -> None:
    with pytest.raises(Interrupted) as stop:
        fit(toy_config(tmp_path), _signalling_factory(toy_data(), 2, signal.SIGTERM))
    assert (stop.value.step, stop.value.exit_code) == (2, 143)
    assert load_checkpoint(tmp_path / "last.pt")["meta"]["step"] == 2


# --- the real thing: `python -m depthkit train` on shards, signalled from outside ---


TINY = ["--res", "32", "--epochs", "4", "--batch-size", "4", "--optimizer", "adamw",
        "--threads", "1", "--model", "diffunet", "--model-option", "widths=(8, 16, 24, 32)",
        "--model-option", "stem=8", "--save-every", "0", "--log-every", "1", "--val-every", "0"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signalled_cli_run_saves_prints_resume_command_and_resumes(
    tmp_path: Path, shard_root: Path, signum: int
) -> None:
    shards = tmp_path / "shards"
    shutil.copytree(shard_root, shards)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "depthkit", "train", "--shards", str(shards), "-o", str(out),
           *TINY]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # the model line comes once fit() has its handlers in place
        seen.append(line)
        if line.startswith("model diffunet"):
            proc.send_signal(signum)
            break
    seen.append(proc.communicate(timeout=300)[1])
    text = "".join(seen)
    assert proc.returncode == 128 + signum, text[-2000:]
    line = next(x for x in text.splitlines() if x.startswith("interrupted at epoch"))
    where, command = line.split("; resume with: ")
    step = int(where.split(" step ")[1])
    assert 0 <= step < 20  # 0 if the signal beat the first step (then fit stops before it)
    ck = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert ck["meta"]["step"] == step
    resume = shlex.split(command)
    assert resume[: len(cmd)] == cmd and resume[len(cmd):] == ["--resume", str(out / "last.pt")]
    done = subprocess.run(resume, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trained 4 epoch(s), 20 steps" in done.stderr
    assert load_checkpoint(out / "last.pt")["meta"]["step"] == 20


# --- DDP: a signal reaching one rank stops both at the same step ---


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, tmp: str, data: dict[str, torch.Tensor], cfg) -> None:
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # only rank 1 is signalled, during its 4th batch
    factory = _signalling_factory(data, 4) if rank == 1 else tensor_loader_factory(data)
    try:
        fit(cfg, factory)
        result = {"step": -1}
    except Interrupted as err:
        result = {"step": err.step, "signum": err.signum, "saved": err.checkpoint is not None}
    torch.save(result, Path(tmp) / f"rank{rank}.pt")


# the ranks agree every --log-every steps (every step with 0): a signal during step 4 stops
# both after step 4, or after the next log step (5)
@pytest.mark.slow
@pytest.mark.parametrize(("log_every", "stop"), [(0, 4), (5, 5)])
def test_ddp_ranks_stop_at_the_same_step(
    tmp_path: Path, toy_config, toy_data, log_every: int, stop: int
) -> None:
    cfg = toy_config(tmp_path / "run", batch_size=4, log_every=log_every)
    mp.spawn(_worker, args=(_free_port(), str(tmp_path), toy_data(), cfg), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0 == {"step": stop, "signum": signal.SIGINT, "saved": True}
    assert r1 == {"step": stop, "signum": signal.SIGINT, "saved": False}
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["meta"]["step"] == stop
    # each rank's loader position, gathered into last.pt
    assert ck["loader"] == {"res": 32, "ranks": [{"epoch": 0, "batch": stop}] * 2}
