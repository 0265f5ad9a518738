"""Atomic file writes: a temp name in the final folder, renamed over the final name when whole.

A killed run therefore never leaves a half file under a name that looks complete; what it can
leave is a hidden `.<name>.tmp-<pid>` that `is_tmp_name` recognises and readers skip. A full
disk deletes the temp file and raises a one-line `DiskFullError` naming the final file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from depthkit.core.diskspace import DiskFullError, on_disk_full

TMP_MARK = ".tmp-"  # temp files are ".<final name>.tmp-<pid>" in the final file's folder


def tmp_path(path: Path) -> Path:
    """A temp name beside `path` (same folder, so os.replace is atomic)."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def is_tmp_name(name: str) -> bool:
    """True for the temp names `tmp_path` makes."""
    return name.startswith(".") and TMP_MARK in name


@contextmanager
def atomic_file(path: Path, fsync: bool = True, parents: bool = False) -> Iterator[BinaryIO]:
    """Open a temp file beside `path`; on success rename it over `path`, else delete it.

    `parents` creates the folder first; `fsync` makes the bytes durable before the rename
    (off for many small files, where a crash at worst loses whole files, never half ones).
    No space left (ENOSPC/EDQUOT): the temp file is deleted and a `DiskFullError` names `path`.
    """
    path = Path(path)
    tmp = tmp_path(path)
    with on_disk_full(path):
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                yield f
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_atomic(path: Path, data: bytes, fsync: bool = True, parents: bool = False) -> None:
    """Write a whole file atomically (temp file + rename)."""
    try:
        with atomic_file(path, fsync=fsync, parents=parents) as f:
            f.write(data)
    except DiskFullError as err:
        err.needs = err.needs or len(data)  # what this file needs; a run's guard may say more
        raise
