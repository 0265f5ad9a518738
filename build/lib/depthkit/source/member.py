"""Member names parsed against the original layout: which role and sample a file is, or why
it is refused. Names that are absolute or climb out (`..`) are refused and never followed."""

from __future__ import annotations

import os
from dataclasses import dataclass

from depthkit.source.naming import (
    BG,
    FG_PER_GROUP,
    FOLDER_OF,
    IMAGE_EXTS,
    MAX_NNN,
    ROLE_OF_FOLDER,
    SampleId,
    is_number,
    unsafe_reason,
)
from depthkit.source.sample import Problem


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
    if len(rest) != want or ext.lower() not in IMAGE_EXTS or not all(map(is_number, nums)):
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
