"""The original "school" layout: naming rules, sample types, the one sample check, and the
folder / .zip / .7z readers (`open_source`)."""

from depthkit.source.base import IndexedSource, Source
from depthkit.source.checks import bg_problem, check_images, size_problem
from depthkit.source.folder import FolderSource
from depthkit.source.member import Member, parse_member
from depthkit.source.naming import (
    BG,
    DEPTH,
    FG_PER_GROUP,
    FGBG,
    FOLDER_OF,
    IMAGE_EXTS,
    MASK,
    SAMPLE_ROLES,
    SLOTS_PER_FG,
    SLOTS_PER_FLIP,
    fg_index,
    is_flipped,
    sample_key,
)
from depthkit.source.open import open_source
from depthkit.source.readers import MemberReader, read_ref
from depthkit.source.sample import Problem, Sample, SampleRef
from depthkit.source.sevenzip import SevenZipSource
from depthkit.source.zipsource import ZipSource

__all__ = ["BG", "DEPTH", "FGBG", "FG_PER_GROUP", "FOLDER_OF", "IMAGE_EXTS", "MASK",
           "SAMPLE_ROLES", "SLOTS_PER_FG", "SLOTS_PER_FLIP", "FolderSource", "IndexedSource",
           "Member", "MemberReader", "Problem", "Sample", "SampleRef", "SevenZipSource",
           "Source", "ZipSource", "bg_problem", "check_images", "fg_index", "is_flipped",
           "open_source", "parse_member", "read_ref", "sample_key", "size_problem"]
