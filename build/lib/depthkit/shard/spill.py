"""Spill buckets: per-shard append-only files that collect converted samples in source order.

The global shuffle sends samples from anywhere in the source to any shard, so conversion
streams the source once, appending each result to its shard's bucket; a shard is then written
from its bucket in planned order with bounded memory (records are read back one at a time).
A bucket record is `<u32 header length><header JSON><blobs>`; the header lists blob lengths.
Buckets are only ever appended to, so a resumed run truncates each one to the length last
recorded in the journal and carries on.
"""

from __future__ import annotations

import json
import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

_LEN = struct.Struct("<I")


@dataclass(frozen=True)
class Record:
    """One bucket record: a converted sample (blobs) or a rejected one (reason)."""

    key: str
    header: dict[str, Any]
    blobs: list[bytes]


def encode_record(key: str, header: dict[str, Any], blobs: list[bytes]) -> bytes:
    """Serialise one record."""
    head = json.dumps({"key": key, **header, "lens": [len(b) for b in blobs]},
                      separators=(",", ":")).encode()
    return b"".join([_LEN.pack(len(head)), head, *blobs])


def scan(path: Path) -> dict[str, tuple[int, dict[str, Any]]]:
    """key -> (offset of the record's blobs, header) for every record of a bucket."""
    out: dict[str, tuple[int, dict[str, Any]]] = {}
    with open(path, "rb") as f:
        while raw := f.read(_LEN.size):
            (n,) = _LEN.unpack(raw)
            head = json.loads(f.read(n))
            out[head["key"]] = (f.tell(), head)
            f.seek(sum(head["lens"]), 1)
    return out


def read_blobs(f: BinaryIO, offset: int, lens: list[int]) -> list[bytes]:
    """The blobs of one record (offset from `scan`)."""
    f.seek(offset)
    return [f.read(n) for n in lens]


def iter_records(path: Path, keys: list[str]) -> Iterator[Record]:
    """Records of the given keys, in that order (keys without a record are skipped)."""
    index = scan(path)
    with open(path, "rb") as f:
        for key in keys:
            if key in index:
                offset, head = index[key]
                yield Record(key, head, read_blobs(f, offset, head["lens"]))


class Buckets:
    """Append handles to many bucket files, at most `max_open` open at once (LRU)."""

    def __init__(self, folder: Path, max_open: int = 64) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._open: OrderedDict[int, BinaryIO] = OrderedDict()
        self._max = max_open

    def path(self, shard: int) -> Path:
        return self.folder / f"bucket-{shard:06d}.bin"

    def append(self, shard: int, record: bytes) -> None:
        f = self._open.pop(shard, None)
        if f is None:
            if len(self._open) >= self._max:
                self._open.popitem(last=False)[1].close()
            f = open(self.path(shard), "ab")  # noqa: SIM115 (kept open across appends)
        self._open[shard] = f
        f.write(record)

    def flush(self) -> None:
        for f in self._open.values():
            f.flush()

    def size(self, shard: int) -> int:
        p = self.path(shard)
        f = self._open.get(shard)
        if f is not None:
            f.flush()
        return p.stat().st_size if p.exists() else 0

    def truncate(self, shard: int, size: int) -> None:
        """Cut a bucket back to a journaled length (drops a half-written tail)."""
        p = self.path(shard)
        if size == 0:
            p.unlink(missing_ok=True)
        else:
            with open(p, "r+b") as f:
                f.truncate(size)

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()

    def remove(self, shard: int) -> None:
        f = self._open.pop(shard, None)
        if f is not None:
            f.close()
        self.path(shard).unlink(missing_ok=True)
