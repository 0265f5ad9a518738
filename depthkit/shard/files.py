"""The files of a shard folder: each shard's tars (one per resolution) written under temp names
and committed together, the backgrounds tars, and the folder's housekeeping (refusing a
foreign folder, clearing temp files of killed runs, removing shards a new plan dropped)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from depthkit.core.atomic import is_tmp_name
from depthkit.core.diskspace import SpaceUse, on_disk_full
from depthkit.core.errors import DepthkitError
from depthkit.core.lock import LOCK_NAME
from depthkit.shard import schema
from depthkit.shard.context import RunContext
from depthkit.shard.convert import Rejected, convert_background
from depthkit.shard.journal import WORK_DIR
from depthkit.shard.plan import ShardSpec
from depthkit.shard.tario import (
    AtomicTar,
    TarInfoRecord,
    index_text,
    list_members,
    remove_stale_tmp,
    sha256_file,
)
from depthkit.source import Problem, Source

_SHARD_FILE = re.compile(r"^(train|val)-\d{6}\.(tar|idx)$")
_OUR_FILE = re.compile(r"^((train|val)-\d{6}|backgrounds)\.(tar|idx)$")
_RES_DIR = re.compile(r"^[1-9]\d*$")


def tar_paths(out: Path, res: int, stem: str) -> tuple[Path, Path]:
    """(tar, index) of one shard (or of the backgrounds) at one resolution."""
    d = out / schema.res_dir(res)
    return d / f"{stem}.tar", d / f"{stem}.idx"


def rel(out: Path, p: Path) -> str:
    """A path as the manifest and journal record it: relative to OUT, with slashes."""
    return p.relative_to(out).as_posix()


def file_entry(out: Path, writer: AtomicTar, info: TarInfoRecord) -> dict[str, Any]:
    """The manifest entry of one committed tar."""
    return {"tar": rel(out, writer.tar_path), "index": rel(out, writer.idx_path),
            "samples": info.samples, "bytes": info.bytes, "sha256": info.sha256}


def shard_files_ok(out: Path, spec: ShardSpec, record: dict[str, Any],
                   resolutions: tuple[int, ...]) -> bool:
    """Whether a shard finished by an earlier run is still intact (sha256 and index)."""
    files = record.get("files", {})
    for res in resolutions:
        entry = files.get(str(res))
        if entry is None:
            return False
        if entry["samples"] == 0:
            continue
        tar, idx = tar_paths(out, res, spec.name)
        try:
            if sha256_file(tar) != entry["sha256"]:
                return False
            if idx.read_text() != index_text(list_members(tar)):
                return False
        except (OSError, ValueError):
            return False
    return True


def journal_rate(journal: dict[str, Any]) -> float | None:
    """Tar bytes per sample (all resolutions) of the shards the journal lists as done."""
    size = count = 0
    for record in journal["done"].values():
        files = list(record.get("files", {}).values())
        size += sum(f.get("bytes", 0) for f in files)
        count += max((f["samples"] for f in files), default=0)
    return size / count if count else None


def open_tars(out: Path, stem: str, resolutions: tuple[int, ...]) -> dict[int, AtomicTar]:
    """Temp tars (one per resolution) for one shard or the backgrounds; if one cannot be
    opened (a full disk), those already open are dropped."""
    writers: dict[int, AtomicTar] = {}
    try:
        for r in resolutions:
            writers[r] = AtomicTar(*tar_paths(out, r, stem))
    except BaseException:
        abort(writers)
        raise
    return writers


def open_shard(out: Path, spec: ShardSpec, resolutions: tuple[int, ...]) -> dict[int, AtomicTar]:
    """Temp tars (one per resolution) for one shard."""
    return open_tars(out, spec.name, resolutions)


def abort(writers: dict[int, AtomicTar] | None) -> None:
    """Drop the temp tars of a shard that will not be finished."""
    for w in (writers or {}).values():
        w.abort()


def commit_shard(out: Path, writers: dict[int, AtomicTar], written: int,
                 rejects: list[dict[str, str]]) -> dict[str, Any]:
    """Rename a shard's finished tars into place; return its journal entry."""
    files: dict[str, Any] = {}
    for r, w in writers.items():
        if written == 0:
            w.abort()
            files[str(r)] = {"samples": 0}
            continue
        files[str(r)] = file_entry(out, w, w.commit())
    return {"files": files, "rejects": rejects}


@dataclass
class Backgrounds:
    """What writing the backgrounds tars found: usable ids (in source order), each
    resolution's file entry, every id the source holds (usable or not), and the rejects."""

    ids: list[int] = field(default_factory=list)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    present: set[int] = field(default_factory=set)
    problems: list[dict[str, str]] = field(default_factory=list)

    def reject(self, run: RunContext, path: str, reason: str, kind: str) -> None:
        run.on_reject(path, reason, kind)
        self.problems.append({"path": path, "reason": reason, "kind": kind})


def write_backgrounds(run: RunContext, source: Source) -> Backgrounds:
    """Check/resize every background of the source into `<res>/backgrounds.tar`."""
    found = Backgrounds()
    left = sum(len(s.keys) for i, s in enumerate(run.plan.shards)
               if str(i) not in run.journal["done"])
    writers: dict[int, AtomicTar] = {}
    try:
        with on_disk_full(needs=SpaceUse(left, journal_rate(run.journal)).needs, resumes=True):
            writers = open_tars(run.out, schema.BACKGROUNDS_STEM, run.resolutions)
            for item in source.backgrounds():
                _add_background(run, item, writers, found)
            if not found.ids:
                raise DepthkitError("the source holds no usable background")
            found.entries = {str(r): file_entry(run.out, w, w.commit())
                             for r, w in writers.items()}
    except BaseException:
        abort(writers)
        raise
    return found


def _add_background(run: RunContext, item: tuple[int, bytes] | Problem,
                    writers: dict[int, AtomicTar], found: Backgrounds) -> None:
    if isinstance(item, Problem):
        found.reject(run, item.path, item.reason, "source")
        return
    bg, data = item
    found.present.add(bg)
    try:
        outs = convert_background(bg, data, run.resolutions, run.cfg.max_pixels)
    except Rejected as err:
        found.reject(run, f"background {bg}", str(err), err.kind)
        return
    for r in run.resolutions:
        writers[r].add(f"{schema.bg_key(bg)}.{schema.BACKGROUND.ext}", outs[r])
    found.ids.append(bg)


# What an output folder may hold and still count as empty: our run lock (run.py) and a
# placeholder that keeps it in a repository (the project's own shards/README.md). Shards never
# touch files that are not theirs, so a placeholder stays.
_EMPTY_FOLDER_FILES = frozenset({LOCK_NAME, "README.md", ".gitkeep"})


def check_out(out: Path, sources: Sequence[Path]) -> None:
    """Refuse an OUT that would mix our files with someone else's."""
    out_r = out.resolve()
    for src in sources:
        if Path(src).resolve() == out_r:
            raise DepthkitError(f"-o {out}: the output folder is the source")
    if out.exists() and not out.is_dir():
        raise DepthkitError(f"-o {out}: exists and is not a folder")
    if out.is_dir() and any(p.name not in _EMPTY_FOLDER_FILES for p in out.iterdir()):
        ours = (out / schema.MANIFEST_NAME).is_file() or (out / WORK_DIR).is_dir()
        if not ours:
            raise DepthkitError(f"-o {out}: folder is not empty and holds no depthkit shards; "
                                "choose an empty or new folder")


def prepare_out(out: Path, resolutions: tuple[int, ...]) -> None:
    """Make OUT and its sub-folders; delete temp files a killed run left behind."""
    out.mkdir(parents=True, exist_ok=True)
    (out / WORK_DIR).mkdir(exist_ok=True)
    for r in resolutions:
        (out / schema.res_dir(r)).mkdir(exist_ok=True)
        remove_stale_tmp(out / schema.res_dir(r))
    remove_stale_tmp(out)
    remove_stale_tmp(out / WORK_DIR)


def remove_strays(out: Path, resolutions: tuple[int, ...], keep: set[str]) -> None:
    """Delete shard files of ours (by name) that the new manifest does not list."""
    for r in resolutions:
        for p in (out / schema.res_dir(r)).iterdir():
            if _SHARD_FILE.match(p.name) and rel(out, p) not in keep:
                p.unlink()


def remove_old_resolutions(out: Path, resolutions: tuple[int, ...]) -> list[str]:
    """Delete the `<res>/` folders an earlier run wrote that this run's manifest does not
    list (docs/format.md: unlisted files are removed); only folders holding nothing but
    depthkit's tars, indexes and temp files. Returns them as "224/"."""
    listed = {schema.res_dir(r) for r in resolutions}
    removed = []
    for d in sorted(out.iterdir(), key=lambda p: (len(p.name), p.name)):
        if not d.is_dir() or d.name in listed or not _RES_DIR.match(d.name):
            continue
        files = list(d.iterdir())
        if not all(f.is_file() and (_OUR_FILE.match(f.name) or is_tmp_name(f.name))
                   for f in files):
            continue  # someone else's files too: leave the folder alone
        for f in files:
            f.unlink()
        d.rmdir()
        removed.append(f"{d.name}/")
    return removed
