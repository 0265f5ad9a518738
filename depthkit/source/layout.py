"""The original "school" dataset layout: enumerate and join its samples from a folder, a .zip
or the original .7z set, streaming with bounded memory.

Layout (see FACTS.md)::

    bg_final/BBB.jpg              background BBB
    fg_bg/BBB/GGG/NNN.jpg         composite (fgbg) on background BBB
    fg_bg_mask/BBB/GGG/NNN.jpg    its mask (1-channel; threshold it)
    Output/BBB/GGG/NNN.jpg        its depth (1-channel, near = dark)

GGG is 001, 011, ..., 091 (one folder per group of 10 foregrounds) and NNN 001..400:
the fg index within the group is (NNN - 1) // 40 and the image is flipped when
(NNN - 1) % 40 >= 20 (20 positions per flip). `.png` (and `.jpeg`) members are accepted
too (`depthkit synth --lossless` writes PNG masks and depth).

Sources (`open_source`):
- a folder holding those four folders (or with them one level down in a zip);
- a .zip holding them (any leading folder prefix is accepted);
- the original archive set bg.7z, fgbg.7z, fgbgmask.7z, Densedepth.7z, given as files or as
  a folder holding them; members with or without their folder prefix (`001/001/001.jpg` or
  `fg_bg/001/001/001.jpg`). See `depthkit.source.sevenzip` for how they are streamed.

Every source yields `Sample`s (encoded bytes as stored) and `Problem`s (a member or sample
refused, with its path and the reason); the caller decides whether to skip and report or
stop. Member names that are absolute or climb out (`..`) are refused as Problems and never
followed. Samples come sorted by (bg, group, nnn) from folders and zips, and in fgbg.7z's
stored order from the 7z set.

Folders and zips are random access: `sample_refs` lists where each sample's members are
(names only, no image read) and `read_ref` reads one sample from its `SampleRef`, with a
`MemberReader` that pickles to a worker process (which then opens its own zip handle).
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from PIL import Image

from depthkit.core.errors import DepthkitError
from depthkit.shard.schema import sample_key

log = logging.getLogger(__name__)

BG, FGBG, MASK, DEPTH = "bg", "fgbg", "mask", "depth"
SAMPLE_ROLES = (FGBG, MASK, DEPTH)
FOLDER_OF = {BG: "bg_final", FGBG: "fg_bg", MASK: "fg_bg_mask", DEPTH: "Output"}
ROLE_OF_FOLDER = {v.lower(): k for k, v in FOLDER_OF.items()}
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
FG_PER_GROUP, SLOTS_PER_FG, SLOTS_PER_FLIP = 10, 40, 20
MAX_NNN = FG_PER_GROUP * SLOTS_PER_FG
# Depth maps were resized to exactly 224 while a background that was not pre-sized was shrunk
# by 0.99 per step until at most 224, so fgbg/mask may be up to 1% (+1 px) smaller than depth.
DEPTH_SIZE_SLACK = 0.01

SampleId = tuple[int, int, int]  # (bg, group, nnn)


@dataclass(frozen=True)
class Sample:
    """One fgbg with its targets: encoded bytes exactly as stored in the source."""

    key: str  # schema.sample_key(bg, group, nnn), no dots
    bg: int  # background id (BBB)
    group: int  # GGG (1, 11, ..., 91)
    nnn: int  # 1..400
    fg: int  # 0-based global fg index: group - 1 + (nnn - 1) // 40
    flip: bool  # (nnn - 1) % 40 >= 20
    path: str  # fgbg path in layout form, e.g. "fg_bg/102/011/045.jpg"
    fgbg: bytes
    mask: bytes
    depth: bytes


@dataclass(frozen=True)
class Problem:
    """A member or sample that was refused; the caller decides: skip and report, or stop."""

    path: str
    reason: str


@dataclass(frozen=True)
class Member:
    """A member name parsed against the layout."""

    role: str
    bg: int
    group: int
    nnn: int
    path: str  # layout form: "<folder>/<rest>" whatever prefix the source had

    @property
    def id(self) -> SampleId:
        return (self.bg, self.group, self.nnn)


def fg_index(group: int, nnn: int) -> int:
    """0-based global foreground index of a sample (the original's naming)."""
    return group - 1 + (nnn - 1) // SLOTS_PER_FG


def is_flipped(nnn: int) -> bool:
    """Whether sample NNN shows its foreground flipped."""
    return (nnn - 1) % SLOTS_PER_FG >= SLOTS_PER_FLIP


def unsafe_reason(name: str) -> str | None:
    """Why a member name must not be followed (absolute, drive, `..`, NUL), or None."""
    n = name.replace("\\", "/")
    if "\x00" in n:
        return "member name contains a NUL byte"
    if n.startswith("/") or re.match(r"^[A-Za-z]:", n):
        return "absolute member name refused"
    if ".." in n.split("/"):
        return "member name climbs out of the source ('..') refused"
    return None


_NUM = re.compile(r"^\d{1,9}$")


def parse_member(name: str, role: str | None = None) -> Member | Problem | None:
    """Parse a member name; None for names outside the layout that are not ours to judge.

    role None: the role comes from a layout folder in the name (folders, zips), and names
    without one are ignored. role given (a role's .7z): the folder prefix is optional.
    Hidden names (a part starting with ".") are ignored: temp files, .DS_Store.
    """
    bad = unsafe_reason(name)
    if bad:
        return Problem(name, bad)
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p.startswith(".") for p in parts):
        return None
    if role is None:
        idx = next((i for i, p in enumerate(parts) if p.lower() in ROLE_OF_FOLDER), None)
        if idx is None:
            return None
        role, rest = ROLE_OF_FOLDER[parts[idx].lower()], parts[idx + 1:]
    elif parts[0].lower() in ROLE_OF_FOLDER:
        if ROLE_OF_FOLDER[parts[0].lower()] != role:
            return Problem(name, f"a {parts[0]} member in the {role} archive")
        rest = parts[1:]
    else:
        rest = parts
    layout = f"{FOLDER_OF[role]}/" + "/".join(rest)
    want = 1 if role == BG else 3
    stem, ext = os.path.splitext(rest[-1]) if rest else ("", "")
    nums = [*rest[:-1], stem]
    if len(rest) != want or ext.lower() not in IMAGE_EXTS or not all(_NUM.match(x) for x in nums):
        expected = "bg_final/BBB.jpg" if role == BG else f"{FOLDER_OF[role]}/BBB/GGG/NNN.jpg"
        return Problem(layout, f"not in the original layout (expected {expected})")
    ints = [int(x) for x in nums]
    if role == BG:
        return Member(BG, ints[0], 0, 0, layout)
    bg, group, nnn = ints
    if group < 1 or (group - 1) % FG_PER_GROUP:
        return Problem(layout, f"group folder {rest[1]} is not one of 001, 011, 021, ...")
    if not 1 <= nnn <= MAX_NNN:
        return Problem(layout, f"file number {stem} outside 001..{MAX_NNN}")
    return Member(role, bg, group, nnn, layout)


def _decode(data: bytes) -> tuple[int, int]:
    with Image.open(BytesIO(data)) as im:
        im.load()
        return im.size


def check_images(fgbg: bytes, mask: bytes, depth: bytes) -> str | None:
    """Decode the three images; the reason they are unusable, or None.

    mask must match fgbg exactly; depth may be up to 1% (+1 px) larger than fgbg per side
    (the original's 223 vs 224 quirk), never smaller.
    """
    sizes = {}
    for role, data in ((FGBG, fgbg), (MASK, mask), (DEPTH, depth)):
        try:
            sizes[role] = _decode(data)
        except Exception as err:  # noqa: BLE001 - PIL raises many types on bad data
            return f"{role} does not decode: {type(err).__name__}: {err}".strip()
    f, m, d = sizes[FGBG], sizes[MASK], sizes[DEPTH]
    if m != f:
        return f"mask size {m[0]}x{m[1]} differs from fgbg size {f[0]}x{f[1]}"
    if d != f and not all(fd <= dd <= fd + int(dd * DEPTH_SIZE_SLACK) + 1
                          for fd, dd in zip(f, d, strict=True)):
        return f"depth size {d[0]}x{d[1]} does not fit fgbg size {f[0]}x{f[1]}"
    return None


def bg_problem(data: bytes) -> str | None:
    """Why a background image is unusable, or None."""
    try:
        _decode(data)
    except Exception as err:  # noqa: BLE001
        return f"background does not decode: {type(err).__name__}: {err}"
    return None


def make_sample(sid: SampleId, path: str, fgbg: bytes, mask: bytes, depth: bytes) -> Sample:
    """A Sample with the derived fields filled in."""
    bg, group, nnn = sid
    return Sample(key=sample_key(bg, group, nnn), bg=bg, group=group, nnn=nnn,
                  fg=fg_index(group, nnn), flip=is_flipped(nnn), path=path,
                  fgbg=fgbg, mask=mask, depth=depth)


@dataclass(frozen=True)
class SampleRef:
    """Where one sample's fgbg, mask and depth are in a random-access source (folder or zip):
    file paths or zip member names. Small and picklable, so a worker process can read it."""

    key: str
    bg: int
    group: int
    nnn: int
    path: str  # fgbg path in layout form, as Sample.path
    members: tuple[str, str, str]  # fgbg, mask, depth as `MemberReader.read` takes them


def read_zip_member(zf: zipfile.ZipFile, member: str | zipfile.ZipInfo) -> bytes:
    """One zip member's bytes; a bad CRC, encryption or a missing name become OSError."""
    try:
        return zf.read(member)
    except (zipfile.BadZipFile, RuntimeError, ValueError, KeyError) as err:
        raise OSError(str(err)) from None


class MemberReader:
    """Reads `SampleRef.members`: files of a folder source, or members of a zip (opened on
    first use). Pickles as its zip path only; unpickling in a process reuses that process's
    open handle for the same zip, so a worker opens each zip once, not once per task."""

    def __init__(self, zip_path: str | None = None) -> None:
        self.zip_path = zip_path
        self._zf: zipfile.ZipFile | None = None

    def read(self, name: str) -> bytes:
        """The bytes of one member (OSError if unreadable)."""
        if self.zip_path is None:
            with open(name, "rb") as f:
                return f.read()
        if self._zf is None:
            self._zf = zipfile.ZipFile(self.zip_path)
        return read_zip_member(self._zf, name)

    def close(self) -> None:
        if self._zf is not None:
            self._zf.close()
            self._zf = None

    def __reduce__(self) -> tuple:
        return (_process_reader, (self.zip_path,))


_PROCESS_READERS: dict[str | None, MemberReader] = {}  # per process: one open handle per zip


def _process_reader(zip_path: str | None) -> MemberReader:
    """This process's reader for a zip (or for folders), made on first use."""
    reader = _PROCESS_READERS.get(zip_path)
    if reader is None:
        reader = _PROCESS_READERS[zip_path] = MemberReader(zip_path)
    return reader


def read_ref(ref: SampleRef, reader: MemberReader) -> Sample | Problem:
    """Read one sample's bytes (unchecked) from its ref; a Problem if a member is unreadable."""
    try:
        fgbg, mask, depth = (reader.read(m) for m in ref.members)
    except OSError as err:
        return Problem(ref.path, f"unreadable: {err}")
    return make_sample((ref.bg, ref.group, ref.nnn), ref.path, fgbg, mask, depth)


def missing_reason(roles: Iterable[str], have: Iterable[str]) -> str:
    missing = [r for r in roles if r not in set(have)]
    return f"{' and '.join(missing)} missing"


class Source:
    """A dataset in the original layout; a context manager. Subclasses read one kind."""

    description = "source"

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release open files."""

    def count(self) -> int:
        """Number of fgbg members (cheap; for progress bars)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.count()

    def keys(self) -> Iterator[tuple[str, int]]:
        """(key, bg) of every fgbg member, from names only (no image read), in the order
        `samples` yields them."""
        raise NotImplementedError

    def backgrounds(self) -> Iterator[tuple[int, bytes] | Problem]:
        """Each background once: (id, encoded bytes), or a Problem."""
        raise NotImplementedError

    def samples(self, *, check: bool = True,
                bgs: Collection[int] | None = None) -> Iterator[Sample | Problem]:
        """Every sample joined with its mask, depth and background, or a Problem.

        check=True decodes the three images and checks sizes (see `check_images`) and
        refuses samples whose background does not decode; a missing background is always
        refused. bgs limits the walk to those background ids (folders and zips skip the
        others unread; the 7z set must still decompress them).
        """
        raise NotImplementedError

    def _bg_status(self, check: bool) -> dict[int, str | None]:
        """Background id -> None (usable) or the reason it is not (decoded once if check)."""
        status: dict[int, str | None] = {}
        for item in self.backgrounds():
            if isinstance(item, Problem):
                continue
            bg, data = item
            status[bg] = bg_problem(data) if check else None
        return status

    def _finish(self, sid: SampleId, path: str, data: dict[str, bytes],
                bgs: dict[int, str | None], check: bool) -> Sample | Problem:
        """Turn a joined (fgbg, mask, depth) into a Sample or a Problem."""
        bg = sid[0]
        if bg not in bgs:
            return Problem(path, f"background {FOLDER_OF[BG]}/{bg:03d}.jpg missing")
        if bgs[bg]:
            return Problem(path, f"{FOLDER_OF[BG]}/{bg:03d}.jpg: {bgs[bg]}")
        if check:
            reason = check_images(data[FGBG], data[MASK], data[DEPTH])
            if reason:
                return Problem(path, reason)
        return make_sample(sid, path, data[FGBG], data[MASK], data[DEPTH])


class _IndexedSource(Source):
    """Random-access sources (folder, zip): join per background, sorted."""

    def _bg_members(self) -> Iterator[Member | Problem]:
        raise NotImplementedError

    def _bg_ids(self) -> list[int]:
        """Background ids present in any sample role, sorted."""
        raise NotImplementedError

    def _members_of(self, bg: int, roles: Sequence[str] = SAMPLE_ROLES
                    ) -> Iterator[Member | Problem]:
        """Sample-role members of one background (of `roles` at least: a source may yield
        more)."""
        raise NotImplementedError

    def _read(self, member: Member) -> bytes:
        raise NotImplementedError

    def backgrounds(self) -> Iterator[tuple[int, bytes] | Problem]:
        seen: dict[int, str] = {}
        for m in self._bg_members():
            if isinstance(m, Problem):
                yield m
            elif m.bg in seen:
                yield Problem(m.path, f"duplicate background (also {seen[m.bg]})")
            else:
                seen[m.bg] = m.path
                try:
                    yield (m.bg, self._read(m))
                except OSError as err:
                    yield Problem(m.path, f"unreadable: {err}")

    def keys(self) -> Iterator[tuple[str, int]]:
        for bg in self._bg_ids():
            ids = {m.id for m in self._members_of(bg, (FGBG,))
                   if isinstance(m, Member) and m.role == FGBG}
            for sid in sorted(ids):
                yield sample_key(*sid), bg

    def _source_problems(self) -> Iterator[Problem]:
        """Problems outside any background's folders (reported when no `bgs` filter)."""
        return iter(())

    def _locate(self, member: Member) -> str:
        """The member as `MemberReader.read` takes it."""
        raise NotImplementedError

    def _joined(self, bgs: Collection[int] | None
                ) -> Iterator[tuple[SampleId, dict[str, Member]] | Problem]:
        """Each complete sample's members by role (sorted by id), or a Problem."""
        if bgs is None:
            yield from self._source_problems()
        wanted = None if bgs is None else set(bgs)
        for bg in self._bg_ids():
            if wanted is not None and bg not in wanted:
                continue
            table: dict[SampleId, dict[str, Member]] = {}
            for m in self._members_of(bg):
                if isinstance(m, Problem):
                    yield m
                    continue
                slot = table.setdefault(m.id, {})
                if m.role in slot:
                    yield Problem(m.path, f"duplicate {m.role} (also {slot[m.role].path})")
                    continue
                slot[m.role] = m
            for sid in sorted(table):
                slot = table[sid]
                if FGBG not in slot:
                    for m in slot.values():
                        yield Problem(m.path, f"{m.role} without fgbg")
                    continue
                if len(slot) < 3:
                    yield Problem(slot[FGBG].path, missing_reason(SAMPLE_ROLES, slot))
                    continue
                yield sid, slot

    def samples(self, *, check: bool = True,
                bgs: Collection[int] | None = None) -> Iterator[Sample | Problem]:
        status = self._bg_status(check)
        for item in self._joined(bgs):
            if isinstance(item, Problem):
                yield item
                continue
            sid, slot = item
            path = slot[FGBG].path
            try:
                data = {role: self._read(m) for role, m in slot.items()}
            except OSError as err:
                yield Problem(path, f"unreadable: {err}")
                continue
            yield self._finish(sid, path, data, status, check)

    def sample_refs(self, bgs: Collection[int] | None = None) -> Iterator[SampleRef | Problem]:
        """Where every sample is (`read_ref` reads it), with the same layout Problems and
        order as `samples`, from names only. Backgrounds are not judged here: the caller
        checks that a sample's background exists and is usable."""
        for item in self._joined(bgs):
            if isinstance(item, Problem):
                yield item
                continue
            sid, slot = item
            yield SampleRef(sample_key(*sid), *sid, slot[FGBG].path,
                            (self._locate(slot[FGBG]), self._locate(slot[MASK]),
                             self._locate(slot[DEPTH])))

    def reader(self) -> MemberReader:
        """A reader for this source's `SampleRef`s (close it when done)."""
        raise NotImplementedError


class FolderSource(_IndexedSource):
    """A folder holding bg_final/, fg_bg/, fg_bg_mask/ and Output/."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.real = os.path.realpath(self.root)
        self.description = str(self.root)
        self.dirs = {ROLE_OF_FOLDER[p.name.lower()]: p for p in self.root.iterdir()
                     if p.name.lower() in ROLE_OF_FOLDER and p.is_dir()}
        if FGBG not in self.dirs:
            raise DepthkitError(f"no fg_bg folder in {self.root}")

    def _inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self.real or real.startswith(self.real + os.sep)

    def _walk(self, top: Path, rel: str, depth: int) -> Iterator[str | Problem]:
        """Relative file paths under top, `depth` levels down; symlinks must stay inside."""
        try:
            entries = sorted(os.scandir(top), key=lambda e: e.name)
        except OSError as err:
            yield Problem(rel, f"unreadable folder: {err}")
            return
        for e in entries:
            if e.name.startswith("."):
                continue
            erel = f"{rel}/{e.name}"
            if e.is_symlink() and not self._inside(e.path):
                yield Problem(erel, "symlink pointing outside the source refused")
                continue
            if e.is_dir():
                if depth > 1:
                    yield from self._walk(Path(e.path), erel, depth - 1)
                else:
                    yield Problem(erel, "unexpected folder in the layout")
            elif depth == 1:
                yield erel
            else:
                yield Problem(erel, "not in the original layout (file where a folder belongs)")

    def _parse_all(self, role: str, top: Path, rel: str, depth: int) -> Iterator[Member | Problem]:
        for item in self._walk(top, rel, depth):
            if isinstance(item, Problem):
                yield item
                continue
            m = parse_member(item, role)
            if m is not None:
                yield m

    def _bg_members(self) -> Iterator[Member | Problem]:
        if BG in self.dirs:
            yield from self._parse_all(BG, self.dirs[BG], self.dirs[BG].name, 1)

    def _bg_dirs(self, role: str) -> dict[int, str]:
        out: dict[int, str] = {}
        top = self.dirs.get(role)
        if top is not None:
            for e in os.scandir(top):
                if e.is_dir() and _NUM.match(e.name):
                    out.setdefault(int(e.name), e.name)
        return out

    def _bg_ids(self) -> list[int]:
        ids: set[int] = set()
        for role in SAMPLE_ROLES:
            ids.update(self._bg_dirs(role))
        return sorted(ids)

    def _members_of(self, bg: int, roles: Sequence[str] = SAMPLE_ROLES
                    ) -> Iterator[Member | Problem]:
        for role in roles:
            name = self._bg_dirs(role).get(bg)
            if name is not None:
                top = self.dirs[role]
                yield from self._parse_all(role, top / name, f"{top.name}/{name}", 2)

    def _stray(self) -> Iterator[Problem]:
        for role in SAMPLE_ROLES:
            top = self.dirs.get(role)
            if top is None:
                continue
            for e in sorted(os.scandir(top), key=lambda e: e.name):
                if not e.name.startswith(".") and not (e.is_dir() and _NUM.match(e.name)):
                    yield Problem(f"{top.name}/{e.name}", "not in the original layout")

    def _source_problems(self) -> Iterator[Problem]:
        return self._stray()

    def _read(self, member: Member) -> bytes:
        return Path(self._locate(member)).read_bytes()

    def _locate(self, member: Member) -> str:
        return str(self.dirs[member.role] / member.path.split("/", 1)[1])

    def reader(self) -> MemberReader:
        return MemberReader()

    def count(self) -> int:
        n = 0
        for name in self._bg_dirs(FGBG).values():
            for g in os.scandir(self.dirs[FGBG] / name):
                if g.is_dir():
                    n += sum(1 for f in os.scandir(g.path)
                             if not f.name.startswith(".") and f.name.lower().endswith(IMAGE_EXTS))
        return n


class ZipSource(_IndexedSource):
    """A .zip holding the layout folders (with or without a leading folder). The central
    directory is held in memory (a few hundred bytes per member); member data is read on
    demand."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        try:
            self.zf = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile) as err:
            raise DepthkitError(f"cannot open zip {self.path}: {err}") from None
        self.problems: list[Problem] = []
        self.bgs: list[Member | Problem] = []
        self.by_bg: dict[int, list[tuple[Member, zipfile.ZipInfo]]] = {}
        self.info: dict[str, zipfile.ZipInfo] = {}
        for zi in self.zf.infolist():
            if zi.is_dir():
                continue
            m = parse_member(zi.filename)
            if m is None:
                continue
            if isinstance(m, Problem):
                (self.bgs if m.path.startswith(FOLDER_OF[BG] + "/") else self.problems).append(m)
            elif m.role == BG:
                self.bgs.append(m)
                self.info[m.path] = zi
            else:
                self.by_bg.setdefault(m.bg, []).append((m, zi))
        if not any(m.role == FGBG for ms in self.by_bg.values() for m, _ in ms):
            raise DepthkitError(f"no fg_bg/ members in zip {self.path}")

    def close(self) -> None:
        self.zf.close()

    def count(self) -> int:
        return sum(1 for ms in self.by_bg.values() for m, _ in ms if m.role == FGBG)

    def _bg_members(self) -> Iterator[Member | Problem]:
        yield from self.bgs

    def _bg_ids(self) -> list[int]:
        return sorted(self.by_bg)

    def _members_of(self, bg: int, roles: Sequence[str] = SAMPLE_ROLES
                    ) -> Iterator[Member | Problem]:
        for m, zi in self.by_bg[bg]:
            self.info[m.path] = zi
            yield m

    def _source_problems(self) -> Iterator[Problem]:
        return iter(self.problems)

    def _read(self, member: Member) -> bytes:
        return read_zip_member(self.zf, self.info[member.path])

    def _locate(self, member: Member) -> str:
        return self.info[member.path].filename

    def reader(self) -> MemberReader:
        return MemberReader(str(self.path))


def open_source(paths: Sequence[str | Path] | str | Path, *, buffer: int = 1000) -> Source:
    """Open a dataset in the original layout: a folder, a .zip, the .7z set (files or the
    folder holding them). `buffer` bounds how many members the 7z reader may hold while it
    joins archives whose member orders differ. One-line DepthkitError when unusable.
    """
    from depthkit.source.sevenzip import SevenZipSource, find_archives, role_of_archive

    items = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not items:
        raise DepthkitError("no source given")
    for p in items:
        if not p.exists():
            raise DepthkitError(f"source not found: {p}")
    if len(items) == 1 and items[0].is_dir():
        root = items[0]
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
    if len(items) == 1 and items[0].suffix.lower() == ".zip":
        return ZipSource(items[0])
    if all(p.is_file() and p.suffix.lower() == ".7z" for p in items):
        return SevenZipSource({role_of_archive(p): p for p in items}, buffer=buffer)
    raise DepthkitError(
        "give one folder, one .zip, or the .7z files (bg.7z fgbg.7z fgbgmask.7z Densedepth.7z): "
        + " ".join(str(p) for p in items))
