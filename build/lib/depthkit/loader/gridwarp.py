"""Grid distortion in torch, the same on CPU and GPU (DALI has no such op on both backends).

Like albumentations' GridDistortion, the distortion is separable: the image is cut into
`steps` cells per axis and each cell is stretched or squeezed by a factor (1 + d). The source
x of a destination pixel depends on its column only and the source y on its row only, so the
warp is two 1-D linear resamplings (gathers) instead of a 2-D `grid_sample`: cheaper, exact
for the identity, and monotone (no folds). Unlike albumentations the cells are renormalised so
the image edges stay at the edges (no border fill).
"""

from __future__ import annotations

import numpy as np
import torch


def source_coords(factors: torch.Tensor, size: int) -> torch.Tensor:
    """Source coordinate (continuous, pixel edges at integers) of each destination pixel centre.

    factors: (B, steps) cell distortions d; returns (B, size).
    """
    batch, steps = factors.shape
    widths = 1.0 + factors.float()
    knots = torch.cat([widths.new_zeros(batch, 1), widths.cumsum(1)], dim=1)
    knots = knots / knots[:, -1:] * size  # (B, steps + 1), from 0 to size
    cell_size = size / steps
    x = torch.arange(size, device=factors.device, dtype=torch.float32) + 0.5
    cell = torch.clamp((x / cell_size).floor().long(), max=steps - 1)
    t = (x - cell * cell_size) / cell_size
    return knots[:, cell] * (1.0 - t) + knots[:, cell + 1] * t


def _resample(x: torch.Tensor, src: torch.Tensor, dim: int) -> torch.Tensor:
    """Linear resampling of x (B, C, H, W) along dim (2 or 3) at source coords src (B, n)."""
    n = x.shape[dim]
    pos = (src - 0.5).clamp(0, n - 1)
    i0 = pos.floor()
    w = (pos - i0).to(x.dtype)
    i0 = i0.long()
    i1 = (i0 + 1).clamp(max=n - 1)
    view = [x.shape[0], 1, 1, 1]
    view[dim] = n
    i0, i1, w = i0.view(view), i1.view(view), w.view(view)
    i0, i1 = i0.expand_as(x), i1.expand_as(x)
    return torch.gather(x, dim, i0) * (1.0 - w) + torch.gather(x, dim, i1) * w


def grid_distort(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Distort float images x (B, C, H, W) with params (B, 2, steps): row 0 for x, row 1 for y."""
    params = params.to(x.device)
    out = _resample(x, source_coords(params[:, 0], x.shape[3]), dim=3)
    return _resample(out, source_coords(params[:, 1], x.shape[2]), dim=2)


# ----------------------------------------------------------------------------- CPU (uint8 HWC)
# On the CPU a gather over float NCHW is slow (torch.gather is scalar code); rows and pixels of
# uint8 HWC images are contiguous, so numpy fancy indexing + integer blending is ~10x cheaper.
# The pipeline runs this inside DALI (fn.python_function) for the samples that drew the grid.


def _taps(factors: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour indices and 8-bit weights of each destination pixel along one axis.

    numpy twin of `source_coords` (the same knots, np.interp between them): a handful of tiny
    torch ops per image would cost more than the resampling itself.
    """
    widths = 1.0 + np.asarray(factors, np.float64)
    knots = np.concatenate([[0.0], np.cumsum(widths)]) / widths.sum() * size
    src = np.interp(np.arange(size) + 0.5, np.linspace(0, size, len(widths) + 1), knots)
    pos = np.clip(src - 0.5, 0, size - 1)
    i0 = np.floor(pos).astype(np.intp)
    i1 = np.minimum(i0 + 1, size - 1)
    w = np.rint((pos - i0) * 256).astype(np.uint16)
    return i0, i1, w


def _blend(a0: np.ndarray, a1: np.ndarray, w: np.ndarray) -> np.ndarray:
    out = a0.astype(np.uint16) * (256 - w) + a1.astype(np.uint16) * w + 128
    return (out >> 8).astype(np.uint8)


def grid_distort_hwc(
    image: np.ndarray, params: np.ndarray, taps: tuple | None = None
) -> np.ndarray:
    """Distort one uint8 HWC image with params (2, steps) (same map as `grid_distort`)."""
    h, w = image.shape[:2]
    (x0, x1, wx), (y0, y1, wy) = taps or (_taps(params[0], w), _taps(params[1], h))
    tmp = _blend(image[:, x0], image[:, x1], wx[None, :, None])
    return _blend(tmp[y0], tmp[y1], wy[:, None, None])


def grid_distort_batch(*batch: list[np.ndarray]) -> tuple[list[np.ndarray], ...]:
    """DALI python_function (batch mode): inputs bg, fgbg, mask, depth, params; 4 outputs."""
    *images, params = batch
    out: tuple[list[np.ndarray], ...] = tuple([] for _ in images)
    for i, p in enumerate(params):
        h, w = images[0][i].shape[:2]
        taps = (_taps(p[0], w), _taps(p[1], h))  # one map per sample, shared by its 4 images
        for dst, imgs in zip(out, images, strict=True):
            dst.append(grid_distort_hwc(imgs[i], p, taps))
    return out
