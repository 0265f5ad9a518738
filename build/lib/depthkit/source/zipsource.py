"""A .zip holding the original layout's folders (any leading folder prefix is accepted): the
central directory is parsed once, member data is read on demand."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from depthkit.core.errors import DepthkitError
from depthkit.source.base import IndexedSource
from depthkit.source.member import Member, parse_member
from depthkit.source.naming import BG, FGBG, FOLDER_OF, SAMPLE_ROLES
from depthkit.source.readers import MemberReader, read_zip_member
from depthkit.source.sample import Problem


class ZipSource(IndexedSource):
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
