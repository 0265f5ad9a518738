"""A dataset folder in the original layout (bg_final/, fg_bg/, fg_bg_mask/, Output/), walked
in sorted order; symlinks that point outside the folder are refused."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from depthkit.core.errors import DepthkitError
from depthkit.source.base import IndexedSource
from depthkit.source.member import Member, parse_member
from depthkit.source.naming import (
    BG,
    FGBG,
    IMAGE_EXTS,
    ROLE_OF_FOLDER,
    SAMPLE_ROLES,
    is_number,
)
from depthkit.source.readers import MemberReader
from depthkit.source.sample import Problem


class FolderSource(IndexedSource):
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
                if e.is_dir() and is_number(e.name):
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
                if not e.name.startswith(".") and not (e.is_dir() and is_number(e.name)):
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
