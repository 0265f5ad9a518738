"""Checks of the shard files a loader reads: a cheap pre-flight before it starts, the sample
behind a failure once it has, and the full `depthkit verify` asked for by `--verify`.

Why: DALI's webdataset reader trusts the tar and its index. A truncated tar whose last member
ends past the end of the file crashes the process (a segmentation fault), other damage ends in
a long traceback that names no file. The pre-flight (`check_split_files`) reads no image: the
files exist, each tar has the size the manifest records, each index parses, holds the recorded
number of samples with every component the loader needs, and points inside its tar.
`find_bad_sample` is for after a loader failure: it checks the members the loader had read
(tar headers against the index, images decoded with Pillow, background ids).
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from PIL import Image, UnidentifiedImageError

from depthkit.core.errors import DepthkitError
from depthkit.shard import schema
from depthkit.shard.manifest import background_file, split_files
from depthkit.shard.tario import BLOCK, INDEX_VERSION, split_name


class IndexEntry(NamedTuple):
    """One component of a sample as the index lists it (a tuple: fast for 2M of them)."""

    ext: str  # what DALI matches `ext=` against (not taken from the name)
    name: str
    offset: int  # of the data, past the 512-byte tar header
    size: int


IndexedSample = list[IndexEntry]  # one sample's components, in tar order
_IMAGE_EXTS = frozenset(f.ext for f in (*schema.IMAGE_FIELDS, schema.BACKGROUND))


def corrupt(path: Path, reason: str, root: Path, key: str | None = None) -> DepthkitError:
    """The one-line error for a damaged shard file (and sample), with what to do about it."""
    where = f" (sample {key})" if key else ""
    return DepthkitError(f"corrupt shard {path}{where}: {reason}; run `depthkit verify {root}` "
                         "to check every shard, then reshard (or copy the folder again)")


def read_index(path: Path, root: Path) -> list[IndexedSample]:
    """The samples of a DALI index file (wds2idx v1.2); DepthkitError naming it if malformed."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise corrupt(path, f"unreadable index ({err})", root) from None
    head = lines[0].split() if lines else []
    if len(head) != 2 or head[0] != INDEX_VERSION or not head[1].isdigit():
        raise corrupt(path, f"not a {INDEX_VERSION} DALI index (line 1)", root)
    samples = [_index_line(line, n, path, root) for n, line in enumerate(lines[1:], 2) if line]
    if len(samples) != int(head[1]):
        raise corrupt(path, f"lists {len(samples)} samples, its header says {head[1]}", root)
    return samples


def _index_line(line: str, n: int, path: Path, root: Path) -> IndexedSample:
    """One index line: groups of (ext, data offset, size, member name)."""
    parts = line.split()
    try:
        if not parts or len(parts) % 4:
            raise ValueError
        return [IndexEntry(parts[i], parts[i + 3], int(parts[i + 1]), int(parts[i + 2]))
                for i in range(0, len(parts), 4)]
    except ValueError:
        raise corrupt(path, f"malformed line {n}", root) from None


def _key(sample: IndexedSample) -> str:
    """A sample's key: its members' names before the first dot."""
    return split_name(sample[0].name)[0]


def check_entry(root: Path, entry: dict[str, Any], required: Sequence[str]) -> None:
    """Pre-flight of one manifest entry (tar + index): files, size, index, every member
    inside the tar and each sample holding the `required` extensions. No image is read."""
    tar, idx = root / entry["tar"], root / entry["index"]
    for path in (tar, idx):
        if not path.is_file():
            raise DepthkitError(f"missing shard file {path} (listed in the manifest); run "
                                f"`depthkit verify {root}`, then reshard")
    size = tar.stat().st_size
    want = entry.get("bytes")
    if want is not None and size != int(want):
        cut = "truncated or partly copied" if size < int(want) else "not the file written"
        raise corrupt(tar, f"{size:,} bytes, the manifest says {int(want):,} ({cut})", root)
    samples = read_index(idx, root)
    if "samples" in entry and len(samples) != int(entry["samples"]):
        raise corrupt(idx, f"lists {len(samples)} samples, the manifest says "
                           f"{entry['samples']}", root)
    for sample in samples:
        for m in sample:
            if m.offset < BLOCK or m.offset % BLOCK or m.size < 0 or m.offset + m.size > size:
                raise corrupt(tar, f"member {m.name} (bytes {m.offset:,}..{m.offset + m.size:,}"
                                   f" by the index) lies outside the file ({size:,} bytes)",
                              root, _key(sample))
        exts = {m.ext for m in sample}
        if missing := [e for e in required if e not in exts]:
            raise corrupt(tar, f"the index lists no {', '.join(missing)} member", root,
                          _key(sample))


def check_split_files(root: Path, manifest: dict[str, Any], res: int, split: str) -> None:
    """Pre-flight of everything a loader of (res, split) reads: that resolution's
    backgrounds.tar and the split's shards (see `check_entry`); DepthkitError naming the file."""
    root = Path(root)
    check_entry(root, background_file(manifest, res), ())
    required = [e for e in schema.REQUIRED_EXTS if e != schema.EXT_META]
    for entry in split_files(manifest, res, split):
        if int(entry.get("samples", 1)) > 0:
            check_entry(root, entry, required)


# ----------------------------------------------------------------------------- after a failure


def find_bad_sample(root: Path, files: Sequence[tuple[str, str]], span: tuple[int, int],
                    bg_ids: frozenset[int]) -> DepthkitError | None:
    """The error for the first damaged sample at stream positions [start, stop) of the
    (tar, index) files read in this order, or None if those samples look sound."""
    root, (start, stop) = Path(root), span
    pos = 0
    for tar, idx in files:
        if pos >= stop:
            break
        samples = read_index(Path(idx), root)
        lo, hi = max(0, start - pos), min(len(samples), stop - pos)
        if lo < hi:
            with open(tar, "rb") as f:
                for sample in samples[lo:hi]:
                    if (why := _sample_problem(f, sample, bg_ids)) is not None:
                        return corrupt(Path(tar), why, root, _key(sample))
        pos += len(samples)
    return None


def _sample_problem(f: BinaryIO, sample: IndexedSample, bg_ids: frozenset[int]) -> str | None:
    """What is wrong with one sample's members as the loader reads them, or None."""
    for m in sample:
        f.seek(m.offset - BLOCK)
        raw = f.read(BLOCK + m.size)
        if len(raw) < BLOCK + m.size:
            return f"member {m.name} ends past the end of the file"
        try:
            info = tarfile.TarInfo.frombuf(raw[:BLOCK], "utf-8", "surrogateescape")
        except tarfile.HeaderError as err:
            return f"the tar header of {m.name} (byte {m.offset - BLOCK:,}) is damaged ({err})"
        if info.name != m.name or info.size != m.size:
            return (f"the tar header at byte {m.offset - BLOCK:,} names {info.name!r} "
                    f"({info.size} bytes), the index {m.name!r} ({m.size} bytes)")
        if (why := _data_problem(m.ext, m.name, raw[BLOCK:], bg_ids)) is not None:
            return why
    return None


def _data_problem(ext: str, name: str, data: bytes, bg_ids: frozenset[int]) -> str | None:
    """A member's bytes as the loader uses them: images decode, a bg id is a known one."""
    if ext in _IMAGE_EXTS:
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
        except UnidentifiedImageError:
            return f"{name} is not a readable image"
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            return f"{name} does not decode ({err})"
    elif ext == schema.EXT_BGID:
        try:
            bg = schema.decode_bgid(data)
        except ValueError as err:
            return f"{name}: {err}"
        if bg_ids and bg not in bg_ids:
            return f"{name}: background id {bg} is not in backgrounds.tar"
    return None


# ----------------------------------------------------------------------------- --verify


def verify_first(root: Path, progress: bool = True) -> None:
    """`depthkit verify` before a run (the --verify option): DepthkitError with the first
    problem if any shard differs from the manifest. Uses this rank's share of the CPUs."""
    from depthkit.shard.verify import verify_shards

    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    workers = (os.cpu_count() or 1) // ranks
    report = verify_shards(Path(root), workers=workers if workers > 1 else 0, progress=progress)
    if not report.ok:
        raise DepthkitError(f"--verify: {len(report.problems)} problem(s) in the shards of "
                            f"{root}, e.g. {report.problems[0]}; run `depthkit verify {root}` "
                            "for the list, then reshard (or copy the folder again)")
