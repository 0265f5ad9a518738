"""One run per output folder: `with RunLock(out, "shard"):` holds an flock on `OUT/.depthkit.lock`
(which records the holder's pid, start time and command line for the error a second run gets).

The kernel drops an flock when the last descriptor of its open file closes, so a run killed
with kill -9 never blocks a rerun; forked children (pool workers) close their inherited copy
at fork, so a worker that outlives its parent does not keep the folder locked either.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from depthkit.core.errors import DepthkitError

LOCK_NAME = ".depthkit.lock"

_held: list[RunLock] = []  # locks this process holds (closed in forked children)


class RunLock:
    """Exclusive use of `folder` (created) by one `depthkit <what>` run; a second run gets a
    one-line DepthkitError naming the holder. The lock file is removed on exit (and the
    folder, if the lock made it and nothing else was written)."""

    def __init__(self, folder: Path, what: str) -> None:
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._made = False  # the lock made the folder: removed again if left empty

    def __enter__(self) -> RunLock:
        try:
            self._made = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            while self._fd is None:
                self._fd = self._try_lock()
            info = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "what": self.what, "argv": sys.argv}
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError as err:
            self.__exit__(None, None, None)
            raise DepthkitError(f"{self.path}: cannot lock the folder for this run "
                                f"({err.strerror or err})") from None
        _held.append(self)
        return self

    def _try_lock(self) -> int | None:
        """The locked descriptor, None to retry (a finishing holder unlinked the file we
        opened), or a DepthkitError naming the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DepthkitError(self._busy_message()) from None
        except OSError:
            os.close(fd)
            raise
        if _same_file(fd, self.path):
            return fd
        os.close(fd)
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is None:
            return
        if self in _held:
            _held.remove(self)
        with contextlib.suppress(OSError):  # while still locked: no one else holds it
            self.path.unlink(missing_ok=True)
        os.close(self._fd)  # releases the lock
        self._fd = None
        if self._made:
            with contextlib.suppress(OSError):  # only if empty: failed before writing
                self.folder.rmdir()

    def _busy_message(self) -> str:
        info = _read_holder(self.path)
        if not info:
            return (f"{self.folder} is in use by another depthkit run (lock {self.path}); "
                    "wait for it to finish or stop it")
        cmd = _command_line(info.get("argv") or ["?"])
        return (f"{self.folder} is in use by depthkit {info.get('what', '?')} pid "
                f"{info.get('pid', '?')} (started {info.get('started', '?')}: {cmd}); "
                "wait for it to finish or stop it")


def _command_line(argv: list[Any]) -> str:
    """The holder's command as typed (roughly), on one short line."""
    head = Path(str(argv[0])).name
    head = "python -m depthkit" if head == "__main__.py" else head
    text = " ".join([head, *map(str, argv[1:])]).replace("\n", " ")
    return text if len(text) <= 200 else text[:197] + "..."


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _read_holder(path: Path) -> dict[str, Any] | None:
    """The holder's record; retried briefly, as a holder writes it just after locking."""
    for _ in range(20):
        try:
            info = json.loads(path.read_text())
            if isinstance(info, dict):
                return info
        except (OSError, ValueError):
            pass
        time.sleep(0.025)
    return None


def _close_in_child() -> None:
    """A forked child drops its copy of each held lock (the parent keeps the lock)."""
    for lock in _held:
        if lock._fd is not None:
            with contextlib.suppress(OSError):
                os.close(lock._fd)
            lock._fd = None
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)
