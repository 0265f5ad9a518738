"""The pictures eval and predict draw: the grid row of one evaluated sample, the side-by-side."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from depthkit.core.images import add_depth_bar, add_titles, colorize_depth, title_font, to_uint8
from depthkit.shard.schema import MASK_THRESHOLD

GRID_TITLES = ("bg", "fgbg", "true mask", "pred mask", "true depth", "pred depth", "mask error")


def error_overlay(fgbg: np.ndarray, pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """fgbg dimmed to gray, false positives red, false negatives cyan (uint8 RGB)."""
    gray = (fgbg.astype(np.float32).mean(axis=2, keepdims=True) * 0.4).astype(np.uint8)
    out = np.repeat(gray, 3, axis=2)
    out[pred & ~true] = (255, 40, 40)
    out[~pred & true] = (0, 220, 255)
    return out


def grid_row(bg: torch.Tensor, fgbg: torch.Tensor, mask: torch.Tensor, mask_prob: torch.Tensor,
             depth: torch.Tensor, depth_pred: torch.Tensor) -> list[np.ndarray]:
    """The seven pictures of one sample, GRID_TITLES (inputs in [0, 1], (C, H, W) each)."""
    def hwc(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().permute(1, 2, 0).numpy()

    fg = to_uint8(hwc(fgbg))
    return [
        to_uint8(hwc(bg)), fg, to_uint8(hwc(mask))[..., 0], to_uint8(hwc(mask_prob))[..., 0],
        colorize_depth(hwc(depth)[..., 0]), colorize_depth(hwc(depth_pred)[..., 0]),
        error_overlay(fg, hwc(mask_prob)[..., 0] >= MASK_THRESHOLD,
                      hwc(mask)[..., 0] >= MASK_THRESHOLD),
    ]


SIDE_TITLES = ("bg", "fgbg", "mask", "depth")


def side_by_side(bg: np.ndarray, fgbg: np.ndarray, mask: np.ndarray, depth: np.ndarray
                 ) -> Image.Image:
    """bg | fgbg | mask | colour depth at the fgbg's size (bg resized to it), with column
    titles and a near ... far depth colour bar; mask is bool."""
    h, w = fgbg.shape[:2]
    bg_fit = np.asarray(Image.fromarray(bg).resize((w, h), Image.BILINEAR))
    mask_rgb = np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=2)
    tiles = [bg_fit, fgbg, mask_rgb, colorize_depth(depth)]
    canvas = Image.new("RGB", (4 * w + 3 * 4, h), (255, 255, 255))
    for i, tile in enumerate(tiles):
        canvas.paste(Image.fromarray(tile), (i * (w + 4), 0))
    font = title_font(min(w, h))
    canvas = add_titles(canvas, SIDE_TITLES, [i * (w + 4) for i in range(4)], w, font)
    return add_depth_bar(canvas, font)
