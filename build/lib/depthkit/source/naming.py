"""Naming rules of the original dataset's layout: role folders, group/file numbers, keys.

Layout of the original dataset::

    bg_final/BBB.jpg              background BBB
    fg_bg/BBB/GGG/NNN.jpg         composite (fgbg) on background BBB
    fg_bg_mask/BBB/GGG/NNN.jpg    its mask (1-channel; threshold it)
    Output/BBB/GGG/NNN.jpg        its depth (1-channel, near = dark)

GGG is 001, 011, ..., 091 (one folder per group of 10 foregrounds) and NNN 001..400:
the fg index within the group is (NNN - 1) // 40 and the image is flipped when
(NNN - 1) % 40 >= 20 (20 positions per flip). `.png` (and `.jpeg`) members are accepted
too (`depthkit synth --lossless` writes PNG masks and depth).
"""

from __future__ import annotations

import re

BG, FGBG, MASK, DEPTH = "bg", "fgbg", "mask", "depth"
SAMPLE_ROLES = (FGBG, MASK, DEPTH)
FOLDER_OF = {BG: "bg_final", FGBG: "fg_bg", MASK: "fg_bg_mask", DEPTH: "Output"}
ROLE_OF_FOLDER = {v.lower(): k for k, v in FOLDER_OF.items()}
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
FG_PER_GROUP, SLOTS_PER_FG, SLOTS_PER_FLIP = 10, 40, 20
MAX_NNN = FG_PER_GROUP * SLOTS_PER_FG

SampleId = tuple[int, int, int]  # (bg, group, nnn)

_NUMBER = re.compile(r"^\d{1,9}$")


def is_number(text: str) -> bool:
    """Whether a name part is a layout number (BBB, GGG, NNN: 1 to 9 digits)."""
    return bool(_NUMBER.match(text))


def fg_index(group: int, nnn: int) -> int:
    """0-based global foreground index of a sample (the original's naming)."""
    return group - 1 + (nnn - 1) // SLOTS_PER_FG


def is_flipped(nnn: int) -> bool:
    """Whether sample NNN shows its foreground flipped."""
    return (nnn - 1) % SLOTS_PER_FG >= SLOTS_PER_FLIP


def sample_key(bg: int, group: int, nnn: int) -> str:
    """Key of a sample: unique per (bg, group, nnn) of the original layout, no dots."""
    return f"b{bg:06d}_g{group:03d}_n{nnn:03d}"


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
