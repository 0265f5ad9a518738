"""Deterministic tar writing, tar member listing and DALI index files (the `wds2idx` format).

Tars are plain POSIX ustar with fixed metadata (mtime 0, uid/gid 0, mode 0644, no user
names), so the same members in the same order always give byte-identical archives.
An index file (what DALI's `fn.readers.webdataset` takes as `index_paths`) is::

    v1.2 <number of samples>
    <ext> <data offset> <size> <member name> [<ext> <offset> <size> <name> ...]  (a sample)

where a sample is a run of consecutive members sharing the part of the name before the first
dot of the base name, and offsets point at the member's data (header offset + 512).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from depthkit.core.atomic import is_tmp_name, tmp_path, write_atomic
from depthkit.core.diskspace import on_disk_full

BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240: archives are padded to a whole record, as GNU tar does
INDEX_VERSION = "v1.2"


@dataclass(frozen=True)
class Member:
    """A regular file inside a tar: its name, data offset and size in bytes."""

    name: str
    offset: int
    size: int


def split_name(name: str) -> tuple[str, str]:
    """(key, extension) of a member name, split at the first dot of the base name (as DALI)."""
    dot = name.find(".", name.rfind("/") + 1)
    if dot < 0:
        return name, ""
    return name[:dot], name[dot + 1 :]


def _ustar_template() -> tuple[bytes, bytes]:
    """The fixed parts of our ustar header: bytes 100..124 (mode, uid, gid) and 148..512."""
    tail = bytearray(364)  # offsets 148..512
    tail[0:8] = b" " * 8  # the checksum field counts as spaces while summing
    tail[156 - 148] = ord(tarfile.REGTYPE)
    tail[257 - 148:265 - 148] = tarfile.POSIX_MAGIC  # b"ustar\x0000"
    return b"0000644\x00" + b"0000000\x00" * 2, bytes(tail)


_MODE_IDS, _TAIL = _ustar_template()
_MTIME = b"%011o\x00" % 0
_FIXED_SUM = sum(_MODE_IDS) + sum(_MTIME) + sum(_TAIL)


def tar_header(name: str, size: int) -> bytes:
    """The 512-byte ustar header of a regular file with fixed, reproducible metadata
    (mtime 0, uid/gid 0, mode 0644, no user names): byte-identical to tarfile's ustar
    header for the same fields, about 10x faster."""
    raw = name.encode("utf-8")
    if len(raw) > 100 or size >= 8**11:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, 0, 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        # ustar refuses names it cannot hold (over 100/155 chars) instead of adding pax records
        return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    size_field = b"%011o\x00" % size
    chksum = _FIXED_SUM + sum(raw) + sum(size_field)
    return b"".join((raw.ljust(100, b"\x00"), _MODE_IDS, size_field, _MTIME,
                     b"%06o\x00" % chksum, _TAIL[7:]))


@dataclass(frozen=True)
class Fragment:
    """A run of tar members (headers, data, padding; no end-of-archive blocks), with offsets
    relative to its start: appended as is, it gives the same bytes as adding each member.
    Members are plain (name, offset, size) tuples: fragments cross process boundaries, and
    tuples pickle several times faster than dataclasses."""

    data: bytes
    members: list[tuple[str, int, int]]


def tar_fragment(items: Iterable[tuple[str, bytes]]) -> Fragment:
    """Lay out (member name, bytes) pairs as tar members in one bytes object."""
    parts: list[bytes] = []
    members: list[tuple[str, int, int]] = []
    pos = 0
    for name, data in items:
        header = tar_header(name, len(data))
        pad = -len(data) % BLOCK
        members.append((name, pos + len(header), len(data)))
        parts += (header, data, bytes(pad)) if pad else (header, data)
        pos += len(header) + len(data) + pad
    return Fragment(b"".join(parts), members)


class TarWriter:
    """Appends regular files to a binary stream as a tar; hashes what it writes.

    Tracks each member's data offset so the DALI index can be written without re-reading.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._pos = 0
        self._sha = hashlib.sha256()
        self.members: list[Member] = []

    @property
    def written(self) -> int:
        """Bytes written so far."""
        return self._pos

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._sha.update(data)
        self._pos += len(data)

    def add(self, name: str, data: bytes) -> None:
        """Append one file."""
        self._write(tar_header(name, len(data)))
        self.members.append(Member(name, self._pos, len(data)))
        self._write(data)
        pad = -len(data) % BLOCK
        if pad:
            self._write(bytes(pad))

    def add_fragment(self, fragment: Fragment) -> None:
        """Append members already laid out by `tar_fragment` (e.g. in a worker process)."""
        base = self._pos
        self._write(fragment.data)
        self.members.extend(Member(name, base + offset, size)
                            for name, offset, size in fragment.members)

    def finish(self) -> tuple[int, str]:
        """Write the end-of-archive blocks; return (total bytes, sha256 hex)."""
        self._write(bytes(2 * BLOCK))
        pad = -self._pos % RECORD
        if pad:
            self._write(bytes(pad))
        return self._pos, self._sha.hexdigest()


def index_text(members: Iterable[Member]) -> str:
    """The DALI index (wds2idx v1.2 format) of a tar's members, in tar order."""
    samples: list[list[str]] = []
    last_key = None
    for m in members:
        key, ext = split_name(m.name)
        if not key or key.endswith("/"):
            continue  # hidden files, as wds2idx skips them
        part = f"{ext} {m.offset} {m.size} {m.name}"
        if key != last_key:
            samples.append([part])
            last_key = key
        else:
            samples[-1].append(part)
    lines = [f"{INDEX_VERSION} {len(samples)}"] + [" ".join(s) for s in samples]
    return "\n".join(lines) + "\n"


def count_samples(members: Iterable[Member]) -> int:
    """Number of samples (runs of members sharing a key) in tar order."""
    n, last = 0, None
    for m in members:
        key = split_name(m.name)[0]
        if key != last:
            n, last = n + 1, key
    return n


def list_members(path: Path) -> list[Member]:
    """Regular-file members of a tar with their data offsets (raises tarfile.TarError if bad)."""
    out = []
    with tarfile.open(path, "r:") as tar:
        for info in tar:
            if info.isreg():
                out.append(Member(info.name, info.offset_data, info.size))
    return out


def iter_tar(path: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every regular file of a tar, in order, streaming."""
    with tarfile.open(path, "r|") as tar:
        for info in tar:
            if info.isreg():
                f = tar.extractfile(info)
                assert f is not None
                yield info.name, f.read()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class TarInfoRecord:
    """What the manifest records about one written tar."""

    samples: int
    bytes: int
    sha256: str


class AtomicTar:
    """A tar and its DALI index written under temp names, renamed into place on `commit()`.

    The index is renamed first, so a tar under its final name always has its index. A full
    disk raises a `DiskFullError` naming the final tar; `abort()` then deletes the temp file.
    """

    def __init__(self, tar_path: Path, idx_path: Path) -> None:
        self.tar_path, self.idx_path = Path(tar_path), Path(idx_path)
        self._tmp = tmp_path(self.tar_path)
        with on_disk_full(self.tar_path):
            self._file = open(self._tmp, "wb")  # noqa: SIM115 (closed in commit/abort)
        self._writer = TarWriter(self._file)

    @property
    def bytes_written(self) -> int:
        """Bytes of tar written so far (what a run's disk-space estimate scales up)."""
        return self._writer.written

    def add(self, name: str, data: bytes) -> None:
        with on_disk_full(self.tar_path):
            self._writer.add(name, data)

    def add_fragment(self, fragment: Fragment) -> None:
        with on_disk_full(self.tar_path):
            self._writer.add_fragment(fragment)

    def commit(self) -> TarInfoRecord:
        """Finish, fsync and rename; return what the manifest records."""
        with on_disk_full(self.tar_path):
            size, sha = self._writer.finish()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            write_atomic(self.idx_path, index_text(self._writer.members).encode())
            os.replace(self._tmp, self.tar_path)
        return TarInfoRecord(count_samples(self._writer.members), size, sha)

    def abort(self) -> None:
        """Close and delete the temp file (nothing under the final names changes)."""
        try:
            self._file.close()  # flushes what is buffered: fails again on a full disk
        except OSError:
            pass  # the file is closed all the same; it is deleted next
        finally:
            self._tmp.unlink(missing_ok=True)


def write_tar(tar_path: Path, idx_path: Path, items: Iterable[tuple[str, bytes]]) -> TarInfoRecord:
    """Write a tar and its DALI index atomically from (member name, bytes) pairs."""
    out = AtomicTar(tar_path, idx_path)
    try:
        for name, data in items:
            out.add(name, data)
        return out.commit()
    except BaseException:
        out.abort()
        raise


def remove_stale_tmp(folder: Path) -> None:
    """Delete temp files left by killed runs (only names this module makes)."""
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if is_tmp_name(p.name) and p.is_file():
            p.unlink(missing_ok=True)
