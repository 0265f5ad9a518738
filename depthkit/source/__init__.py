"""The original "school" layout: naming rules, sample types, and folder / .zip / .7z readers."""

from depthkit.source.layout import (
    BG,
    DEPTH,
    FG_PER_GROUP,
    FGBG,
    FOLDER_OF,
    IMAGE_EXTS,
    MASK,
    SLOTS_PER_FG,
    SLOTS_PER_FLIP,
    Problem,
    Sample,
    Source,
    open_source,
)

__all__ = ["BG", "DEPTH", "FGBG", "FG_PER_GROUP", "FOLDER_OF", "IMAGE_EXTS", "MASK",
           "SLOTS_PER_FG", "SLOTS_PER_FLIP", "Problem", "Sample", "Source", "open_source"]
