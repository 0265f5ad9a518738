"""The one sample validity rule: which fgbg / mask / depth sizes belong together, and the
decode checks that `Source.samples(check=True)` applies (`depthkit shard` applies the same
size rule after its own decoding, in `depthkit.shard.convert`).

Size rule (`size_problem`): the mask must match the fgbg exactly; the depth may differ from
the fgbg by at most max(2 px, 2% of the fgbg's longer side) per side, in either direction.
Why a tolerance: in the original dataset the depth maps were resized to exactly 224 x 224,
while a background that was not pre-sized was shrunk by 0.99 per step until at most 224, so
some fgbg/mask are 223 where their depth is 224. Why this one: it is the rule `depthkit
shard` has always applied to folder, zip and 7z sources alike, so shard output is unchanged
for every sample it accepts; a px or two either way is harmless since every image is resized
to the shard resolution anyway.
"""

from __future__ import annotations

from io import BytesIO

from PIL import Image

from depthkit.source.naming import DEPTH, FGBG, MASK

DEPTH_SIZE_SLACK = 0.02  # of the fgbg's longer side ...
DEPTH_SIZE_MIN_SLACK = 2  # ... but at least this many pixels

Size = tuple[int, int]  # (width, height)


def depth_slack(fgbg_size: Size) -> int:
    """How many pixels per side a depth map may differ from its fgbg."""
    return max(DEPTH_SIZE_MIN_SLACK, round(DEPTH_SIZE_SLACK * max(fgbg_size)))


def size_problem(fgbg_size: Size, mask_size: Size, depth_size: Size) -> str | None:
    """Why these image sizes do not make a sample (see the module docstring), or None."""
    f, m, d = fgbg_size, mask_size, depth_size
    if m != f:
        return f"mask size {m[0]}x{m[1]} differs from fgbg {f[0]}x{f[1]}"
    slack = depth_slack(f)
    if abs(d[0] - f[0]) > slack or abs(d[1] - f[1]) > slack:
        return f"depth size {d[0]}x{d[1]} differs from fgbg {f[0]}x{f[1]}"
    return None


def decoded_size(data: bytes) -> Size:
    """Decode an image fully and return its size; raises whatever Pillow raises on bad data."""
    with Image.open(BytesIO(data)) as im:
        im.load()
        return im.size


def check_images(fgbg: bytes, mask: bytes, depth: bytes) -> str | None:
    """Decode the three images of a sample; the reason they are unusable, or None."""
    sizes = {}
    for role, data in ((FGBG, fgbg), (MASK, mask), (DEPTH, depth)):
        try:
            sizes[role] = decoded_size(data)
        except Exception as err:  # noqa: BLE001 - PIL raises many types on bad data
            return f"{role} does not decode: {type(err).__name__}: {err}".strip()
    return size_problem(sizes[FGBG], sizes[MASK], sizes[DEPTH])


def bg_problem(data: bytes) -> str | None:
    """Why a background image is unusable, or None."""
    try:
        decoded_size(data)
    except Exception as err:  # noqa: BLE001
        return f"background does not decode: {type(err).__name__}: {err}"
    return None
