"""Worker processes that never outlive their run, and signals that end a run cleanly.

`init_worker` is the initializer of every process pool (shard, verify, synth): a worker ignores
Ctrl-C (the main process stops the pool), dies with its parent on Linux (prctl
PR_SET_PDEATHSIG) and, everywhere, exits once a watchdog thread sees its parent or the pool's
owner gone. So `kill -9` of the main process leaves no workers running.

`stop_on_signals` (the CLI's main) turns SIGTERM and SIGINT into a `Terminated` exception in
the main thread, so context managers run, pools shut down and temp files are dropped; the CLI
then exits 128 + the signal number (143, 130) with a one-line message.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from types import FrameType

WATCH_S = 0.5  # how often a worker's watchdog looks for its parent
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})  # what ends a run cleanly
_PR_SET_PDEATHSIG = 1


class Terminated(BaseException):
    """SIGTERM or SIGINT reached the main process (BaseException: no `except Exception`
    swallows it, and the CLI framework does not turn it into a silent exit)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        """The shell's code for death by this signal: 143 for SIGTERM, 130 for SIGINT."""
        return 128 + self.signum


_stopping = False  # a Terminated was raised: a repeated SIGTERM must not cut the cleanup


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    global _stopping
    if _stopping and signum == signal.SIGTERM:
        return  # (a second Ctrl-C still stops the cleanup)
    _stopping = True
    raise Terminated(signum)


def stop_on_signals() -> None:
    """Raise `Terminated` in the main thread on SIGTERM and SIGINT (call from the main
    thread, before any pool starts). A signal the process was started with ignored (SIGINT of
    a script's `cmd &`) stays ignored."""
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _raise_terminated)


def init_worker(owner: int) -> None:
    """Pool initializer (`initargs=(os.getpid(),)`): die with the pool's owner process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the owner shuts the pool down
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the owner's handler (fork copies it)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # held back by the forking owner
    _die_with_parent()
    parent = os.getppid()
    if _gone(owner, parent):  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch, args=(owner, parent), name="parent-watch",
                     daemon=True).start()


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent exits."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the watchdog still covers it


def _gone(owner: int, parent: int) -> bool:
    """Whether the pool's owner is gone: this process was re-parented, or the owner (not our
    direct parent when a pool forks through a server) no longer exists."""
    if os.getppid() != parent:
        return True
    if parent == owner:
        return False
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _watch(owner: int, parent: int) -> None:
    while not _gone(owner, parent):
        time.sleep(WATCH_S)
    os._exit(1)
