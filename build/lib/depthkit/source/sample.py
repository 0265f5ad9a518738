"""What every source yields: a `Sample` (encoded bytes as stored) or a `Problem` (a member or
sample refused, with its path and the reason; the caller decides whether to skip or stop),
and the `SampleRef` that locates a sample in a random-access source."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from depthkit.source.naming import SampleId, fg_index, is_flipped, sample_key


@dataclass(frozen=True)
class Sample:
    """One fgbg with its targets: encoded bytes exactly as stored in the source."""

    key: str  # sample_key(bg, group, nnn), no dots
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
class SampleRef:
    """Where one sample's fgbg, mask and depth are in a random-access source (folder or zip):
    file paths or zip member names. Small and picklable, so a worker process can read it."""

    key: str
    bg: int
    group: int
    nnn: int
    path: str  # fgbg path in layout form, as Sample.path
    members: tuple[str, str, str]  # fgbg, mask, depth as `MemberReader.read` takes them


def make_sample(sid: SampleId, path: str, fgbg: bytes, mask: bytes, depth: bytes) -> Sample:
    """A Sample with the derived fields filled in."""
    bg, group, nnn = sid
    return Sample(key=sample_key(bg, group, nnn), bg=bg, group=group, nnn=nnn,
                  fg=fg_index(group, nnn), flip=is_flipped(nnn), path=path,
                  fgbg=fgbg, mask=mask, depth=depth)


def missing_reason(roles: Iterable[str], have: Iterable[str]) -> str:
    """The reason of an incomplete sample: which of `roles` are not in `have`."""
    missing = [r for r in roles if r not in set(have)]
    return f"{' and '.join(missing)} missing"
