"""Atomic writers for a dataset in the original layout: a folder, one .zip, or the .7z set.

Every file or archive is written under a temporary name in its final folder and renamed
when complete, so a killed run never leaves a file that looks whole. A full disk raises a
`DiskFullError` naming the file or archive; `abort()` deletes the temp files.
"""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Protocol

from depthkit.core.atomic import tmp_path, write_atomic
from depthkit.core.diskspace import on_disk_full
from depthkit.source import FOLDER_OF
from depthkit.source.sevenzip import ARCHIVE_NAMES

log = logging.getLogger(__name__)

ZIP_NAME = "dataset.zip"
# The original archive set: archive name -> layout folder its members belong to. Members are
# stored without the folder prefix, as the original `7z a fgbg.7z <path>/fg_bg/*` did.
SEVENZIP_ARCHIVES = {name: FOLDER_OF[role] for role, name in ARCHIVE_NAMES.items()}


class DatasetWriter(Protocol):
    def write(self, rel: str, data: bytes) -> None: ...
    def close(self) -> list[Path]: ...
    def abort(self) -> None: ...


class FolderWriter:
    """Files under `root`, each written to a hidden temp name then renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs: set[Path] = set()

    def write(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        write_atomic(path, data, fsync=False)

    def close(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def abort(self) -> None:
        """Nothing to undo: every file on disk is complete."""


class ZipWriter:
    """One zip (stored, JPEGs do not compress) holding the layout folders."""

    def __init__(self, root: Path) -> None:
        self.path = root / ZIP_NAME
        self.tmp = tmp_path(self.path)
        with on_disk_full(self.path):
            self.zf = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_STORED)

    def write(self, rel: str, data: bytes) -> None:
        with on_disk_full(self.path):
            self.zf.writestr(rel, data)

    def close(self) -> list[Path]:
        with on_disk_full(self.path):
            self.zf.close()
            os.replace(self.tmp, self.path)
        return [self.path]

    def abort(self) -> None:
        try:
            self.zf.close()  # writes the central directory: fails again on a full disk
        except OSError:
            log.debug("closing %s failed during abort", self.tmp)
        finally:
            self.tmp.unlink(missing_ok=True)


class SevenZipWriter:
    """The original four .7z archives, each one solid LZMA2 stream written as members arrive.

    Preset 1 keeps compression from being the bottleneck: JPEG bytes barely compress anyway.
    """

    def __init__(self, root: Path, preset: int = 1) -> None:
        import py7zr

        self.root = root
        filters = [{"id": py7zr.FILTER_LZMA2, "preset": preset}]
        self.archives: dict[str, tuple[Path, Path, py7zr.SevenZipFile]] = {}
        self.by_folder: dict[str, str] = {}
        try:
            for name, folder in SEVENZIP_ARCHIVES.items():
                path = root / name
                tmp = tmp_path(path)
                with on_disk_full(path):
                    self.archives[name] = (path, tmp, py7zr.SevenZipFile(tmp, "w",
                                                                         filters=filters))
                self.by_folder[folder] = name
        except BaseException:
            self.abort()  # the archives already opened
            raise

    def write(self, rel: str, data: bytes) -> None:
        folder, member = rel.split("/", 1)
        path, _tmp, sz = self.archives[self.by_folder[folder]]
        with on_disk_full(path):
            sz.writestr(data, member)

    def close(self) -> list[Path]:
        for path, _tmp, sz in self.archives.values():
            with on_disk_full(path):
                sz.close()
        for path, tmp, _sz in self.archives.values():
            os.replace(tmp, path)
        return [p for p, _t, _s in self.archives.values()]

    def abort(self) -> None:
        for _path, tmp, sz in self.archives.values():
            try:
                sz.close()
            except Exception:  # noqa: BLE001 - cleaning up after another error
                log.debug("closing %s failed during abort", tmp)
            tmp.unlink(missing_ok=True)


def open_writer(root: Path, archive: str | None) -> DatasetWriter:
    """The writer for `--archive` (None: folders)."""
    if archive is None:
        return FolderWriter(root)
    if archive == "zip":
        return ZipWriter(root)
    return SevenZipWriter(root)
