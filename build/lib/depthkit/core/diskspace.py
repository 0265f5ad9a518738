"""Disk full (ENOSPC, or EDQUOT: over quota) as a one-line user error instead of a traceback.

`on_disk_full` wraps a write: an OSError that means "no space" becomes a `DiskFullError`
naming the file, the free space on its filesystem and, where the caller knows the work left,
roughly how much more the run needs. Guards nest: the innermost one that knows the file names
it (atomic_file, the tar writer), an outer one that knows the remaining work (a shard or synth
run) supplies the estimate, and the outermost says whether a rerun resumes.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from depthkit.core.errors import DepthkitError

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})

Needs = Callable[[], int | None]  # bytes the run still has to write (None: unknown)


@dataclass
class SpaceUse:
    """What a run has written of its `total` items (samples), so a full disk can say roughly
    what the rest needs: bytes per item so far x items not yet kept. Items in temp files that
    the failure deletes (an open shard, a whole archive) are written but not kept."""

    total: int
    fallback: float | None = None  # bytes per item when nothing is written yet (an earlier run)
    bytes: int = 0
    items: int = 0  # items in `bytes`
    kept: int = 0  # items whose files are complete under their final names
    block: int = 1  # many small files: each takes whole filesystem blocks (`block_size`)

    def add(self, size: int) -> None:
        """Count one file (or a piece of a big one) of `size` bytes."""
        self.bytes += -(-size // self.block) * self.block

    def needs(self) -> int | None:
        """Bytes the items not yet kept need, or None while nothing tells."""
        per = self.bytes / self.items if self.items else self.fallback
        return None if per is None else int(per * max(self.total - self.kept, 0))


def block_size(folder: Path) -> int:
    """The filesystem's allocation unit at `folder` (a small file takes at least this)."""
    try:
        return os.statvfs(folder).f_frsize or 1
    except (OSError, AttributeError):  # no statvfs on Windows
        return 4096


def is_no_space(err: BaseException) -> bool:
    """True for an OSError meaning the filesystem (or the user's quota) is full."""
    return isinstance(err, OSError) and err.errno in NO_SPACE


def free_bytes(path: Path) -> int | None:
    """Free bytes on the filesystem holding `path` (its nearest existing folder), or None."""
    p = Path(path).absolute()
    for folder in (p, *p.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return None


def human(n: int) -> str:
    """Bytes as a short figure: 512 B, 12 MB, 3.4 GB (decimal units, as df -H)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} B"


class DiskFullError(DepthkitError):
    """No space left while writing `path`; the message says what is free and what is needed.

    The fields are filled in as the error passes the nested `on_disk_full` guards, and the
    message is built from them when printed.
    """

    def __init__(self, path: Path | str | None, needs: int | None = None,
                 what: str = "this file") -> None:
        super().__init__(str(path))
        self.path = None if path is None else Path(path)
        self.needs, self.what = needs, what
        self.resumes = False

    def __str__(self) -> str:
        where = "" if self.path is None else f" writing {self.path}"
        free = None if self.path is None else free_bytes(self.path)
        text = f"disk full{where}" + ("" if free is None else f": {human(free)} free")
        if self.needs:
            text += f", {self.what} needs about {human(self.needs)} more"
        rerun = "rerun the same command (it resumes)" if self.resumes else "rerun"
        return f"{text}; free space and {rerun}"


def no_space_cause(err: BaseException) -> OSError | DiskFullError | None:
    """The "no space" OSError behind `err`: itself, or one it was raised from or while
    handling (torch.save, for one, turns its file's OSError into a RuntimeError)."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        if isinstance(e, DiskFullError) or (isinstance(e, OSError) and e.errno in NO_SPACE):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def disk_full_from(err: BaseException, path: Path | str | None = None) -> DiskFullError | None:
    """The `DiskFullError` for an error caused by a full disk (naming `path`, else the file
    the OSError names), or None when the error has another cause."""
    cause = no_space_cause(err)
    if cause is None:
        return None
    if isinstance(cause, DiskFullError):
        cause.path = cause.path or (None if path is None else Path(path))
        return cause
    return DiskFullError(path or cause.filename)  # our name: the OSError may name a temp file


@contextmanager
def on_disk_full(path: Path | str | None = None, needs: Needs | None = None,
                 resumes: bool = False) -> Iterator[None]:
    """Turn a "no space" error raised inside into a `DiskFullError` about `path`.

    `needs` (called only on failure) estimates what the whole run still has to write; it
    replaces a narrower estimate from an inner guard. `resumes`: a rerun continues the run.
    """
    try:
        yield
    except Exception as err:
        full = disk_full_from(err, path)
        if full is None:
            raise
        _fill(full, needs, resumes)
        if full is err:
            raise
        raise full from None


def _fill(err: DiskFullError, needs: Needs | None, resumes: bool) -> None:
    if needs is not None:
        try:
            estimate = needs()
        except Exception:  # noqa: BLE001 - an estimate must never hide the disk-full error
            estimate = None
        if estimate:
            err.needs, err.what = estimate, "this run"
    err.resumes = err.resumes or resumes
