"""What a dataset source in the original layout offers (`Source`), and the joining shared by
the random-access sources, folders and zips (`IndexedSource`).

Every source yields `Sample`s and `Problem`s; the caller decides whether to skip and report
or stop. Samples come sorted by (bg, group, nnn) from folders and zips, and in fgbg.7z's
stored order from the 7z set. Folders and zips are random access as well: `sample_refs`
lists where each sample's members are (names only, no image read) and
`depthkit.source.readers.read_ref` reads one sample from its `SampleRef`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence

from depthkit.source.checks import bg_problem, check_images
from depthkit.source.member import Member
from depthkit.source.naming import (
    BG,
    DEPTH,
    FGBG,
    FOLDER_OF,
    MASK,
    SAMPLE_ROLES,
    SampleId,
    sample_key,
)
from depthkit.source.readers import MemberReader
from depthkit.source.sample import Problem, Sample, SampleRef, make_sample, missing_reason


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

        check=True decodes the three images and checks sizes (see
        `depthkit.source.checks`) and refuses samples whose background does not decode; a
        missing background is always refused. bgs limits the walk to those background ids
        (folders and zips skip the others unread; the 7z set must still decompress them).
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


class IndexedSource(Source):
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
