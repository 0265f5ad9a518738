"""What a shard sample holds and how each part is encoded: the one place that says so.

Shard folder layout (OUT, default `shards/`)::

    OUT/manifest.json                 the manifest (see MANIFEST_* below)
    OUT/rejects.jsonl                 one JSON line per skipped source sample: {"path", "reason"}
    OUT/<res>/backgrounds.tar         every background once, resized to res x res
    OUT/<res>/backgrounds.idx         DALI index of backgrounds.tar (wds2idx format)
    OUT/<res>/train-000000.tar ...    training samples, globally shuffled at write time
    OUT/<res>/train-000000.idx ...
    OUT/<res>/val-000000.tar ...      held-out samples
    OUT/<res>/val-000000.idx ...

`<res>` is the side in pixels ("64", "128", "224"); one sub-folder per resolution written.

A sample is a group of tar members sharing a key (the part before the first dot; keys hold
no dots because DALI's webdataset reader splits the extension at the FIRST dot):

    <key>.fgbg.jpg    composite, RGB JPEG, res x res
    <key>.mask.jpg    foreground mask, 1-channel JPEG, res x res; threshold at 128 after decode
    <key>.depth.jpg   depth, 1-channel JPEG, res x res; 0 = near, 255 = far (relative depth)
    <key>.bgid        background id: 4 bytes, little-endian int32 (DALI: dtypes=INT32)
    <key>.meta.json   {"bg": int, "group": int, "nnn": int, "fg": int, "flip": bool, "src": str}

Masks and depth are JPEG (not PNG) because DALI decodes JPEG on the GPU ("mixed") and PNG
only on the CPU; the original dataset's masks and depth were JPEG already, so their bytes are
copied unchanged when the resolution matches.

A background member is `<bgkey>.jpg` with bgkey = `bg_key(bg_id)` (e.g. "bg000102").
"""

from __future__ import annotations

import struct

FORMAT_NAME = "depthkit-shards"
FORMAT_VERSION = 1

# Component extensions, as DALI's `ext=` sees them (everything after the key's first dot).
EXT_FGBG = "fgbg.jpg"
EXT_MASK = "mask.jpg"
EXT_DEPTH = "depth.jpg"
EXT_BGID = "bgid"
EXT_META = "meta.json"
SAMPLE_EXTS = (EXT_FGBG, EXT_MASK, EXT_DEPTH, EXT_BGID, EXT_META)
REQUIRED_EXTS = (EXT_FGBG, EXT_MASK, EXT_DEPTH, EXT_BGID)
EXT_BG = "jpg"

MANIFEST_NAME = "manifest.json"
REJECTS_NAME = "rejects.jsonl"
BACKGROUNDS_STEM = "backgrounds"
SPLITS = ("train", "val")

MASK_THRESHOLD = 128  # uint8 mask value at or above which a pixel is foreground
JPEG_QUALITY = 95  # quality used whenever depthkit has to (re-)encode a JPEG


def sample_key(bg: int, group: int, nnn: int) -> str:
    """Key of a sample: unique per (bg, group, nnn) of the original layout, no dots."""
    return f"b{bg:06d}_g{group:03d}_n{nnn:03d}"


def bg_key(bg: int) -> str:
    """Key of a background member in backgrounds.tar."""
    return f"bg{bg:06d}"


def encode_bgid(bg: int) -> bytes:
    """The `.bgid` component: little-endian int32."""
    return struct.pack("<i", bg)


def decode_bgid(data: bytes) -> int:
    """Inverse of `encode_bgid`; raises ValueError on a wrong length."""
    if len(data) != 4:
        raise ValueError(f"bgid component has {len(data)} bytes, expected 4")
    return struct.unpack("<i", data)[0]


def shard_name(split: str, index: int) -> str:
    """File stem of the index-th shard of a split, e.g. train-000003."""
    return f"{split}-{index:06d}"


def res_dir(res: int) -> str:
    """Sub-folder (relative to the shard root) holding one resolution's tars."""
    return str(int(res))
