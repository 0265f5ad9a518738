"""Picture helpers for eval and predict: uint8 conversion, a depth colormap, grids with titles
and a depth colour bar, atomic PNGs.

Pillow + numpy only (no matplotlib).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from depthkit.core.atomic import write_atomic

# Google's Turbo colormap as the published 5th-degree polynomial fit (Ruofei Du): smooth,
# ordered dark blue -> green -> yellow -> dark red, and no lookup table to ship.
_TURBO = np.array([
    [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
    [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
    [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
])


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """(H, W) depth in [0, 1] -> (H, W, 3) uint8 RGB with the turbo colormap (near = dark blue)."""
    t = np.clip(np.asarray(depth, dtype=np.float64), 0.0, 1.0)
    powers = np.stack([t**k for k in range(6)], axis=-1)  # (H, W, 6)
    rgb = np.clip(powers @ _TURBO.T, 0.0, 1.0)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """A [0, 1] float array -> uint8 (rounded, clipped)."""
    return (np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def as_rgb(x: np.ndarray) -> np.ndarray:
    """uint8 (H, W) or (H, W, 1|3) -> (H, W, 3)."""
    if x.ndim == 2:
        x = x[..., None]
    return np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x


def title_font(cell: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at a size that scales with the picture cell (readable at any res)."""
    return ImageFont.load_default(size=max(11, cell // 9))


def _font_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    """Pixel height of a line of text in `font` (ascent to descent)."""
    box = font.getbbox("Ayg")
    return int(box[3] - box[1])


def add_titles(image: Image.Image, titles: Sequence[str], lefts: Sequence[int], width: int,
               font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> Image.Image:
    """A white title row above `image`, each title centred over its column (left x, width)."""
    pad = max(2, _font_height(font) // 4)
    head = _font_height(font) + 2 * pad
    out = Image.new("RGB", (image.width, image.height + head), (255, 255, 255))
    out.paste(image, (0, head))
    draw = ImageDraw.Draw(out)
    for title, left in zip(titles, lefts, strict=False):
        box = draw.textbbox((0, 0), title, font=font)
        x = left + max(0, (width - (box[2] - box[0])) // 2) - box[0]
        draw.text((x, pad - font.getbbox("Ayg")[1]), title, fill=(0, 0, 0), font=font)
    return out


def add_depth_bar(image: Image.Image, font: ImageFont.ImageFont | ImageFont.FreeTypeFont
                  ) -> Image.Image:
    """A depth legend below `image`: "near", the turbo colour ramp (colorize_depth), "far"."""
    text_h = _font_height(font)
    pad = max(2, text_h // 3)
    near_w = int(font.getlength("near")) + pad
    far_w = int(font.getlength("far")) + pad
    bar_w = max(16, image.width - near_w - far_w - 4 * pad)
    ramp = colorize_depth(np.tile(np.linspace(0.0, 1.0, bar_w)[None, :], (text_h, 1)))
    out = Image.new("RGB", (max(image.width, bar_w + near_w + far_w + 4 * pad),
                            image.height + text_h + 2 * pad), (255, 255, 255))
    out.paste(image, (0, 0))
    top = image.height + pad
    x_bar = 2 * pad + near_w
    out.paste(Image.fromarray(ramp), (x_bar, top))
    draw = ImageDraw.Draw(out)
    for text, x in (("near", 2 * pad), ("far", x_bar + bar_w + pad)):
        draw.text((x, top - font.getbbox("Ayg")[1]), text, fill=(0, 0, 0), font=font)
    return out


def make_grid(
    rows: Sequence[Sequence[np.ndarray]],
    titles: Sequence[str] | None = None,
    pad: int = 2,
    cell: int | None = None,
    depth_bar: bool = False,
) -> Image.Image:
    """Tile uint8 images (rows x columns) into one RGB picture with optional column titles
    and a depth colour bar below; the titles' font scales with the cell (title_font).

    Every image is resized (nearest) to `cell` x `cell` (default: the first image's height).
    """
    if not rows or not rows[0]:
        raise ValueError("make_grid needs at least one image")
    size = cell or rows[0][0].shape[0]
    ncols = max(len(r) for r in rows)
    width = ncols * size + (ncols + 1) * pad
    height = len(rows) * size + (len(rows) + 1) * pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            tile = Image.fromarray(as_rgb(img))
            if tile.size != (size, size):
                tile = tile.resize((size, size), Image.NEAREST)
            canvas.paste(tile, (pad + c * (size + pad), pad + r * (size + pad)))
    font = title_font(size)
    if titles:
        canvas = add_titles(canvas, titles, [pad + c * (size + pad) for c in range(ncols)],
                            size, font)
    return add_depth_bar(canvas, font) if depth_bar else canvas


def save_image_atomic(image: Image.Image, path: Path, fmt: str = "PNG") -> None:
    """Write an image to `path` atomically (its folder is created if needed)."""
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    write_atomic(Path(path), buf.getvalue(), fsync=False, parents=True)


def jpeg_roundtrip(img: np.ndarray, quality: int = 95) -> np.ndarray:
    """Decode(encode as JPEG at `quality`) of a uint8 RGB array: what a model sees in a dataset."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
