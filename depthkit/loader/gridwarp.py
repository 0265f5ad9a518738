"""Grid distortion in torch, for the GPU backend (DALI has no such op); the CPU backend folds
the same map into its one numpy resampling per sample (depthkit.loader.cpuwarp).

Like albumentations' GridDistortion, the distortion is separable: the image is cut into
`steps` cells per axis and each cell is stretched or squeezed by a factor (1 + d). The source
x of a destination pixel depends on its column only and the source y on its row only, so the
warp is two 1-D linear resamplings (gathers) instead of a 2-D `grid_sample`: cheaper, exact
for the identity, and monotone (no folds). Unlike albumentations the cells are renormalised so
the image edges stay at the edges (no border fill).
"""

from __future__ import annotations

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
    """Distort float images x (B, C, H, W) with params (B, 2, steps): row 0 for x, row 1 for y.

    All-zero factors map every pixel onto itself (to float rounding), so a whole batch can be
    distorted without picking out the samples that drew it; nothing is read back to the host.
    """
    params = params.to(x.device)
    out = _resample(x, source_coords(params[:, 0], x.shape[3]), dim=3)
    return _resample(out, source_coords(params[:, 1], x.shape[2]), dim=2)
