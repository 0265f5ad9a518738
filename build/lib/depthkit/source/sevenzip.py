"""Streaming reader of the original .7z set (bg.7z, fgbg.7z, fgbgmask.7z, Densedepth.7z).

The original archives are solid: a member can only be reached by decompressing everything
before it, so each archive is read once, front to back. One thread per archive decompresses
(py7zr's `extract(factory=...)`, with the archive passed as a file object so py7zr stays
sequential) into a small bounded queue; the main thread joins the three streams in lockstep,
one member from each per step.

Ordering assumption: the three sample archives store their members in the same order (they
were packed from identical folder trees by the same command). This is checked up front from
the archive headers, without decompressing: if a member's position differs between fgbg.7z
and another archive by more than `buffer` members, opening fails with a one-line error;
smaller differences are absorbed by holding at most about `buffer` members per archive.
Members missing from one archive are known from the headers too and reported as Problems
as soon as their other parts arrive, so memory stays bounded whatever the dataset size
(headers are held: about 100 bytes per member).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Collection, Iterator
from pathlib import Path

from depthkit.core.errors import DepthkitError
from depthkit.source.base import Source
from depthkit.source.member import Member, parse_member
from depthkit.source.naming import (
    BG,
    DEPTH,
    FGBG,
    MASK,
    SAMPLE_ROLES,
    SampleId,
    sample_key,
    unsafe_reason,
)
from depthkit.source.sample import Problem, Sample, missing_reason

log = logging.getLogger(__name__)

# Archive file stem (lower case) -> role. The original names first, then folder names.
ARCHIVE_ROLES = {"bg": BG, "fgbg": FGBG, "fgbgmask": MASK, "densedepth": DEPTH,
                 "bg_final": BG, "fg_bg": FGBG, "fg_bg_mask": MASK, "output": DEPTH}
ARCHIVE_NAMES = {BG: "bg.7z", FGBG: "fgbg.7z", MASK: "fgbgmask.7z", DEPTH: "Densedepth.7z"}
_END = object()


def role_of_archive(path: Path) -> str:
    """The role of a .7z by its name (bg.7z, fgbg.7z, fgbgmask.7z, Densedepth.7z)."""
    role = ARCHIVE_ROLES.get(Path(path).stem.lower())
    if role is None:
        raise DepthkitError(f"cannot tell what {path} holds: expected one of "
                            + ", ".join(ARCHIVE_NAMES.values()))
    return role


def find_archives(folder: Path) -> dict[str, Path]:
    """The role archives in a folder (others, such as the original fg.7z, are ignored)."""
    found: dict[str, Path] = {}
    for p in sorted(Path(folder).glob("*.7z")):
        role = ARCHIVE_ROLES.get(p.stem.lower())
        if role is None:
            log.info("ignoring %s (not one of the dataset's archives)", p)
        elif role in found:
            raise DepthkitError(f"two {role} archives in {folder}: {found[role].name}, {p.name}")
        else:
            found[role] = p
    return found


def _list_members(path: Path) -> list[str]:
    import py7zr

    try:
        with py7zr.SevenZipFile(path, "r") as sz:
            return [f.filename for f in sz.files if not f.is_directory]
    except Exception as err:  # noqa: BLE001 - py7zr raises many types on bad archives
        raise DepthkitError(f"cannot read 7z {path}: {type(err).__name__}: {err}") from None


class _Stopped(Exception):
    """Raised inside py7zr's extraction when the reader was closed early."""


class MemberStream:
    """(name, bytes) of one .7z's file members in stored order, decompressed ahead by a
    background thread into a queue of at most `depth` members."""

    def __init__(self, path: Path, targets: set[str] | None, depth: int = 16) -> None:
        self.path = path
        self.targets = targets
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"7z-{path.name}", daemon=True)
        self.thread.start()

    def _emit(self, item: object) -> None:
        while True:
            try:
                self.q.put(item, timeout=0.1)
                return
            except queue.Full:
                if self.stop.is_set():
                    raise _Stopped() from None

    def _run(self) -> None:
        import py7zr
        from py7zr.io import Py7zIO, WriterFactory

        stream = self

        class Collector(Py7zIO):
            def __init__(self, name: str) -> None:
                self.name, self.chunks, self.n = name, [], 0

            def write(self, s: bytes | bytearray) -> int:
                self.chunks.append(bytes(s))
                self.n += len(s)
                return len(s)

            def read(self, size: int | None = None) -> bytes:
                return b""

            def seek(self, offset: int, whence: int = 0) -> int:
                return 0

            def flush(self) -> None:
                pass

            def size(self) -> int:
                return self.n

            def close(self) -> None:  # called once the member is complete and its CRC ok
                stream._emit((self.name, b"".join(self.chunks)))

        class Factory(WriterFactory):
            def create(self, filename: str) -> Py7zIO:
                return Collector(filename)

        try:
            with open(self.path, "rb") as fh, py7zr.SevenZipFile(fh, "r") as sz:
                sz.extract(targets=self.targets, factory=Factory())
            self._emit(_END)
        except _Stopped:
            return
        except Exception as err:  # noqa: BLE001 - handed to the consumer
            try:
                self._emit(err)
            except _Stopped:
                return

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        while True:
            item = self.q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise DepthkitError(
                    f"{self.path}: archive unreadable: {type(item).__name__}: {item}") from None
            yield item

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


class _Listing:
    """One archive's header, parsed: what will arrive, in which order."""

    def __init__(self, role: str, path: Path) -> None:
        self.role, self.path = role, path
        self.problems: list[Problem] = []
        self.unsafe = False
        self.position: dict[SampleId, int] = {}  # id -> index in the stream
        self.skip: set[int] = set()  # stream indices to drop (refused or duplicate)
        index = 0
        for name in _list_members(path):
            if unsafe_reason(name):
                self.problems.append(Problem(f"{path.name}:{name}", unsafe_reason(name) or ""))
                self.unsafe = True
                continue  # excluded from extraction: no stream index
            m = parse_member(name, role)
            if isinstance(m, Problem):
                self.problems.append(Problem(f"{path.name}:{m.path}", m.reason))
                self.skip.add(index)
            elif m is None:
                self.skip.add(index)
            elif role != BG and m.id in self.position:
                self.problems.append(Problem(f"{path.name}:{name}", f"duplicate {role} member"))
                self.skip.add(index)
            else:
                self.position[m.id] = index
            index += 1
        self.names = None

    def targets(self) -> set[str] | None:
        """Names to extract when some must be left out (py7zr refuses unsafe names)."""
        if not self.unsafe:
            return None
        return {n for n in _list_members(self.path) if not unsafe_reason(n)}


class SevenZipSource(Source):
    """The original .7z set; see the module docstring for streaming and ordering."""

    def __init__(self, archives: dict[str, Path], buffer: int = 1000) -> None:
        missing = [ARCHIVE_NAMES[r] for r in (BG, *SAMPLE_ROLES) if r not in archives]
        if missing:
            raise DepthkitError("the .7z set lacks " + ", ".join(missing))
        self.archives = archives
        self.buffer = buffer
        self.description = " ".join(str(archives[r]) for r in (BG, *SAMPLE_ROLES))
        self.lists = {r: _Listing(r, archives[r]) for r in (BG, *SAMPLE_ROLES)}
        fg = self.lists[FGBG]
        if not fg.position:
            raise DepthkitError(f"no fgbg members in {archives[FGBG]}")
        for role in (MASK, DEPTH):
            other = self.lists[role].position
            lag, worst = 0, None
            for sid, i in fg.position.items():
                j = other.get(sid)
                if j is not None and abs(i - j) > lag:
                    lag, worst = abs(i - j), sid
            if lag > buffer:
                raise DepthkitError(
                    f"{archives[role].name} stores members in another order than "
                    f"{archives[FGBG].name} (sample {worst} is {lag} members apart, over the "
                    f"buffer of {buffer}); raise the buffer or extract and read the folder")

    def count(self) -> int:
        return len(self.lists[FGBG].position)

    def keys(self) -> Iterator[tuple[str, int]]:
        for sid in self.lists[FGBG].position:  # dicts keep the stored order
            yield sample_key(*sid), sid[0]

    def backgrounds(self) -> Iterator[tuple[int, bytes] | Problem]:
        listing = self.lists[BG]
        yield from listing.problems
        stream = MemberStream(listing.path, listing.targets())
        seen: set[int] = set()
        try:
            for name, data in stream:
                m = parse_member(name, BG)
                if not isinstance(m, Member):
                    continue  # reported from the listing
                if m.bg in seen:
                    yield Problem(f"{listing.path.name}:{name}", "duplicate background")
                    continue
                seen.add(m.bg)
                yield (m.bg, data)
        finally:
            stream.close()

    def samples(self, *, check: bool = True,
                bgs: Collection[int] | None = None) -> Iterator[Sample | Problem]:
        status = self._bg_status(check)
        wanted = None if bgs is None else set(bgs)
        lists = {r: self.lists[r] for r in SAMPLE_ROLES}
        if wanted is None:
            for listing in lists.values():
                yield from listing.problems
        expected: dict[SampleId, set[str]] = {}
        for role, listing in lists.items():
            for sid in listing.position:
                expected.setdefault(sid, set()).add(role)
        streams = {r: MemberStream(lst.path, lst.targets()) for r, lst in lists.items()}
        iters = {r: iter(s) for r, s in streams.items()}
        index = dict.fromkeys(SAMPLE_ROLES, 0)
        pending: dict[SampleId, dict[str, tuple[str, bytes]]] = {}
        try:
            while iters:
                for role in list(iters):
                    try:
                        name, data = next(iters[role])
                    except StopIteration:
                        del iters[role]
                        continue
                    i = index[role]
                    index[role] += 1
                    if i in lists[role].skip:
                        continue
                    m = parse_member(name, role)
                    if not isinstance(m, Member) or lists[role].position.get(m.id) != i:
                        continue  # reported from the listing
                    slot = pending.setdefault(m.id, {})
                    slot[role] = (m.path, data)
                    want = expected[m.id]
                    if len(slot) < len(want):
                        continue
                    del pending[m.id]
                    if wanted is None or m.id[0] in wanted:
                        yield self._complete(m.id, slot, status, check)
            for slot in pending.values():  # cannot happen if headers told the truth
                yield Problem(next(iter(slot.values()))[0], "member listed but never extracted")
        finally:
            for s in streams.values():
                s.close()

    def _complete(self, sid: SampleId, slot: dict[str, tuple[str, bytes]],
                  bgs: dict[int, str | None], check: bool) -> Sample | Problem:
        if FGBG not in slot:
            path, _ = next(iter(slot.values()))
            return Problem(path, f"{' and '.join(slot)} without fgbg")
        path = slot[FGBG][0]
        if len(slot) < 3:
            return Problem(path, missing_reason(SAMPLE_ROLES, slot))
        return self._finish(sid, path, {r: d for r, (_p, d) in slot.items()}, bgs, check)
