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
from dataclasses import dataclass

from depthkit.core.errors import DepthkitError
from depthkit.source.naming import sample_key as sample_key  # re-exported

FORMAT_NAME = "depthkit-shards"
FORMAT_VERSION = 1

# Component extensions, as DALI's `ext=` sees them (everything after the key's first dot).
EXT_FGBG = "fgbg.jpg"
EXT_MASK = "mask.jpg"
EXT_DEPTH = "depth.jpg"
EXT_BGID = "bgid"
EXT_META = "meta.json"
EXT_BG = "jpg"

RES_MULTIPLE = 16  # resolutions (shard, train, eval, predict) must be multiples of this: 4 poolings


def check_res(res: int, option: str = "--res") -> int:
    """Return `res` if it is a positive multiple of RES_MULTIPLE, else a one-line DepthkitError."""
    if res <= 0 or res % RES_MULTIPLE:
        raise DepthkitError(f"{option} {res}: must be a positive multiple of {RES_MULTIPLE}")
    return res



@dataclass(frozen=True)
class Field:
    """One component of a shard sample: how it is stored, decoded and scaled.

    `mode` is the Pillow mode of an image component (None: raw bytes); `dali_dtype` names the
    `nvidia.dali.types` dtype the webdataset reader hands out; `scale` says what the loader
    makes of it: "stats" (normalised by the manifest's mean/std), "unit" (/255 to [0, 1]),
    "binary" (>= MASK_THRESHOLD_U8 -> 0/1), "id" (an int32 background id).
    """

    name: str
    ext: str
    mode: str | None
    dali_dtype: str
    scale: str
    required: bool = True


FIELDS = (
    Field("fgbg", EXT_FGBG, "RGB", "UINT8", "stats"),
    Field("mask", EXT_MASK, "L", "UINT8", "binary"),
    Field("depth", EXT_DEPTH, "L", "UINT8", "unit"),
    Field("bgid", EXT_BGID, None, "INT32", "id"),
    Field("meta", EXT_META, None, "UINT8", "none", required=False),
)
IMAGE_FIELDS = tuple(f for f in FIELDS if f.mode is not None)
BACKGROUND = Field("bg", EXT_BG, "RGB", "UINT8", "stats")  # one per bg, in backgrounds.tar
FIELD_BY_EXT = {f.ext: f for f in (*FIELDS, BACKGROUND)}
SAMPLE_EXTS = tuple(f.ext for f in FIELDS)
REQUIRED_EXTS = tuple(f.ext for f in FIELDS if f.required)

MANIFEST_NAME = "manifest.json"
REJECTS_NAME = "rejects.jsonl"
BACKGROUNDS_STEM = "backgrounds"
SPLITS = ("train", "val")

# A pixel is foreground at probability (or mask value on [0, 1]) >= MASK_THRESHOLD; on the uint8
# scale of a decoded mask that is >= 128 (127.5 rounded up): one rule for targets and predictions.
MASK_THRESHOLD = 0.5
MASK_THRESHOLD_U8 = 128
JPEG_QUALITY = 95  # quality used whenever depthkit has to (re-)encode a JPEG


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
