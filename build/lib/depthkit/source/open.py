"""`open_source`: open a dataset in the original layout, choosing the reader by what is given.

- a folder holding the four layout folders (`FolderSource`);
- a .zip holding them, any leading folder prefix accepted (`ZipSource`), or a folder
  holding exactly one .zip;
- the original archive set bg.7z, fgbg.7z, fgbgmask.7z, Densedepth.7z, given as files or as
  a folder holding them; members with or without their folder prefix (`001/001/001.jpg` or
  `fg_bg/001/001/001.jpg`). See `depthkit.source.sevenzip` for how they are streamed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from depthkit.core.errors import DepthkitError
from depthkit.source.base import Source
from depthkit.source.folder import FolderSource
from depthkit.source.naming import FGBG, FOLDER_OF
from depthkit.source.sevenzip import SevenZipSource, find_archives, role_of_archive
from depthkit.source.zipsource import ZipSource


def _open_folder(root: Path, buffer: int) -> Source:
    """The source a folder holds: the layout folders, the .7z set, or one .zip."""
    names = {p.name.lower() for p in root.iterdir()}
    if FOLDER_OF[FGBG] in names:
        return FolderSource(root)
    archives = find_archives(root)
    if archives:
        return SevenZipSource(archives, buffer=buffer)
    zips = sorted(root.glob("*.zip"))
    if len(zips) == 1:
        return ZipSource(zips[0])
    raise DepthkitError(
        f"{root} holds neither the layout folders (fg_bg/ ...), nor the .7z set "
        "(bg.7z, fgbg.7z, fgbgmask.7z, Densedepth.7z), nor one .zip")


def open_source(paths: Sequence[str | Path] | str | Path, *, buffer: int = 1000) -> Source:
    """Open a dataset in the original layout: a folder, a .zip, the .7z set (files or the
    folder holding them). `buffer` bounds how many members the 7z reader may hold while it
    joins archives whose member orders differ. One-line DepthkitError when unusable.
    """
    items = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not items:
        raise DepthkitError("no source given")
    for p in items:
        if not p.exists():
            raise DepthkitError(f"source not found: {p}")
    if len(items) == 1 and items[0].is_dir():
        return _open_folder(items[0], buffer)
    if len(items) == 1 and items[0].suffix.lower() == ".zip":
        return ZipSource(items[0])
    if all(p.is_file() and p.suffix.lower() == ".7z" for p in items):
        return SevenZipSource({role_of_archive(p): p for p in items}, buffer=buffer)
    raise DepthkitError(
        "give one folder, one .zip, or the .7z files (bg.7z fgbg.7z fgbgmask.7z Densedepth.7z): "
        + " ".join(str(p) for p in items))
