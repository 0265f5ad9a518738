"""The torch-side steps after DALI: mask threshold, colour, GPU grid distortion, memory format.

They run on whole batches and never read a value back to the host, so on the GPU a batch's
post-processing is queued behind its decoding without a sync: samples that drew no colour
carry the IDENTITY draw and samples that drew no grid carry zero factors, both of which leave
the images unchanged. The per-sample draws reach the images' device in one copy, and the
constants (YIQ matrices, stats, clip bounds) are built once per device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from depthkit.loader import gridwarp
from depthkit.loader.photometric import ColorSpace, apply_color
from depthkit.shard import schema

if TYPE_CHECKING:  # an annotation only: the torch steps stay DALI-free
    from depthkit.loader.augment import AugmentConfig

IMAGES = (schema.BACKGROUND, *schema.IMAGE_FIELDS)  # the image fields of a batch, in order
NORMALISED = tuple(f.name for f in IMAGES if f.scale == "stats")  # bg, fgbg
BGID = schema.FIELD_BY_EXT[schema.EXT_BGID]
COLOR = 4  # values per sample of the colour draw (photometric.IDENTITY)


def threshold(mask: torch.Tensor) -> torch.Tensor:
    """A uint8 mask as float 0/1 (foreground at >= MASK_THRESHOLD_U8)."""
    return (mask >= schema.MASK_THRESHOLD_U8).float()


def warp_batch(batch: dict[str, torch.Tensor], grid: torch.Tensor) -> dict[str, torch.Tensor]:
    """Grid-distort every sample (zero factors: unchanged), all 8 channels in one pass; the
    mask is thresholded again so it stays 0/1."""
    stacked = torch.cat([batch[f.name] for f in IMAGES], dim=1)
    warped = gridwarp.grid_distort(stacked, grid)
    parts = torch.split(warped, [batch[f.name].shape[1] for f in IMAGES], dim=1)
    out = dict(batch)
    for f, part in zip(IMAGES, parts, strict=True):
        out[f.name] = (part >= schema.MASK_THRESHOLD).float() if f.scale == "binary" else part
    return out


class PostProcess:
    """The torch steps of one loader: `post(dali_outputs)` -> the batch dict.

    `norm`: mean/std of bg and fgbg; colour runs when `augment` has colour ops, the grid
    distortion here when `gpu` (the CPU backend distorts inside DALI) and `augment` draws it.
    """

    def __init__(self, norm: dict[str, dict[str, list[float]]], augment: AugmentConfig | None,
                 gpu: bool, channels_last: bool = False) -> None:
        self.norm = norm
        self.color = augment is not None and augment.any_color
        self.grid = gpu and augment is not None and augment.p_grid > 0
        self.channels_last = channels_last
        self._spaces: dict[tuple[str, torch.device, torch.dtype], ColorSpace] = {}

    def space(self, key: str, device: torch.device, dtype: torch.dtype) -> ColorSpace:
        """The colour constants of field `key` on `device` (built on first use, then kept)."""
        slot = (key, torch.device(device), dtype)
        if slot not in self._spaces:
            stats = self.norm[key]
            self._spaces[slot] = ColorSpace.make(stats["mean"], stats["std"], device, dtype)
        return self._spaces[slot]

    def __call__(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        batch = {f.name: threshold(out[f.name]) if f.scale == "binary" else out[f.name]
                 for f in IMAGES}
        batch[BGID.name] = out[BGID.name].reshape(-1).long()
        if self.color or self.grid:
            color, grid = self._draws(out["color"], out["grid"], batch["bg"].device)
            if self.color:
                for key in NORMALISED:
                    x = batch[key]
                    batch[key] = apply_color(x, color, self.space(key, x.device, x.dtype))
            if self.grid:
                batch = warp_batch(batch, grid)
        if self.channels_last:
            for key in NORMALISED:
                batch[key] = batch[key].contiguous(memory_format=torch.channels_last)
        return batch

    @staticmethod
    def _draws(color: torch.Tensor, grid: torch.Tensor,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(colour (B, 4), grid (B, 2, steps)) on `device`, moved in one non-blocking copy."""
        if color.device == device and grid.device == device:
            return color, grid
        both = torch.cat([color.float().reshape(-1, COLOR), grid.float().flatten(1)], dim=1)
        if both.device.type == "cpu" and device.type == "cuda":
            both = both.pin_memory()
        both = both.to(device, non_blocking=True)
        return both[:, :COLOR], both[:, COLOR:].view(grid.shape)
