"""Stopping a run cleanly on Ctrl-C (SIGINT) or a scheduler's SIGTERM (preemption).

`StopSignals` (a context manager, active while `Trainer.fit` runs) turns the first SIGINT or
SIGTERM into a flag that the trainer reads after each optimiser step: it then writes last.pt at
that step and raises `Interrupted`, which the CLI prints with the command that resumes the run
(`resume_command`) and turns into exit code 130 / 143. A second SIGINT raises KeyboardInterrupt
at once (no save); a repeated SIGTERM is ignored (a cluster's SIGKILL follows its grace period,
and Slurm plus torchrun can each deliver one). Torch-free: the CLI imports it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from depthkit.core.workers import Terminated

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Terminated):
    """Training stopped on a signal after step `step` of epoch `epoch` (1-based), with its
    state in `checkpoint` (None on ranks that write none). A `Terminated` (BaseException: no
    `except Exception` swallows it; `exit_code` is 130 / 143), so callers of `fit` other than
    `depthkit train` (the demo) still end the way the CLI ends any signalled command."""

    def __init__(self, signum: int, epoch: int, step: int, checkpoint: Path | None) -> None:
        self.signum, self.epoch, self.step, self.checkpoint = signum, epoch, step, checkpoint
        BaseException.__init__(self, f"interrupted at epoch {epoch} step {step}")


class StopSignals:
    """While active (main thread only), the first SIGINT/SIGTERM sets `signum` instead of
    killing the process; the previous handlers come back on exit. Signals the process was
    started with ignored (SIG_IGN, e.g. SIGINT of a `cmd &` job in a script) stay ignored."""

    def __init__(self, announce: bool = True) -> None:
        self.signum: int | None = None  # the first signal received, if any
        self.announce = announce  # write a line to stderr when the first signal arrives
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                previous = signal.getsignal(sig)
                if previous is not signal.SIG_IGN:
                    self._previous[sig] = previous
                    signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask for a stop as the first signal would (tests, embedding code)."""
        if self.signum is None:
            self.signum = int(signum)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            if self.announce:  # os.write: no locks taken inside a signal handler
                name = signal.Signals(signum).name
                os.write(2, f"\n{name}: stopping after this step and saving last.pt "
                            "(Ctrl-C again: quit now without saving)\n".encode())
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt


def _without_resume(args: Sequence[str]) -> list[str]:
    """`args` without any `--resume X` / `--resume=X`."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not arg.startswith("--resume="):
            out.append(arg)
    return out


def _program(argv: Sequence[str], orig_argv: Sequence[str], env: Mapping[str, str]) -> str:
    """How the user started depthkit: torchrun, `python -m depthkit` or the console script."""
    if env.get("TORCHELASTIC_RUN_ID"):
        return "torchrun [your torchrun options] -m depthkit"
    if Path(argv[0]).name == "__main__.py":  # python [-X ...] -m depthkit
        return shlex.join(orig_argv[: len(orig_argv) - len(argv) + 1])
    name = Path(argv[0]).name
    found = shutil.which(name)
    same = found is not None and Path(found).resolve() == Path(argv[0]).resolve()
    return shlex.quote(name if same else argv[0])


def resume_command(checkpoint: Path, argv: Sequence[str] | None = None,
                   orig_argv: Sequence[str] | None = None,
                   env: Mapping[str, str] | None = None) -> str:
    """The command line this process was started with, `--resume checkpoint` added (or put in
    place of the one given): what continues an interrupted run."""
    argv = list(sys.argv if argv is None else argv)
    orig = list(getattr(sys, "orig_argv", argv) if orig_argv is None else orig_argv)
    args = [*_without_resume(argv[1:]), "--resume", str(checkpoint)]
    return f"{_program(argv, orig, os.environ if env is None else env)} {shlex.join(args)}"
