"""Training losses: `criterion(out, batch) -> (total, parts)` built from a LossConfig (in config).

Mask: `mse` (the original: MSE, here on sigmoid(logits) so every model emits logits),
`bce_dice` (BCE-with-logits + soft Dice: BCE gives sharp per-pixel gradients, Dice keeps small
objects from being drowned by background) or `bce_lovasz` (BCE + Lovasz hinge, which optimises
IoU itself and so weighs the edge pixels where most mask errors are). Depth: `mse` (original),
`l1_ssim_grad` (L1 + (1 - SSIM) / 2 + L1 of image gradients, as in DenseDepth: sharp edges,
structure-aware) or `l1_ssi_grad` (L1, plus the MiDaS terms: the L1 left after fitting each
prediction's scale and shift to its target, and multi-scale gradient matching of that aligned
residual; the targets are min-max normalised per image, so their scale is relative anyway,
and the plain L1 keeps the output on the target's 0-1 scale).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from depthkit.core.errors import DepthkitError
from depthkit.train.config import LossConfig

MASK_LOSSES = ("bce_dice", "bce_lovasz", "mse")
DEPTH_LOSSES = ("l1_ssi_grad", "l1_ssim_grad", "mse")


def soft_dice_loss(logits: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """1 - Dice of sigmoid(logits) vs target, per image then averaged."""
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    inter = (prob * target).sum(1)
    dice = (2 * inter + eps) / (prob.sum(1) + target.sum(1) + eps)
    return 1 - dice.mean()


def lovasz_hinge_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Lovasz hinge (Berman et al. 2018): a convex surrogate of 1 - IoU, per image then averaged.

    Errors are sorted per image and weighted by the IoU change each one causes, so the gradient
    goes where it moves IoU most (thin parts and edges) rather than where pixels are many.
    """
    logits, target = logits.flatten(1), target.flatten(1)
    losses = []
    for lg, t in zip(logits, target, strict=True):
        errors = 1 - lg * (2 * t - 1)
        errors_sorted, order = torch.sort(errors, descending=True)
        t_sorted = t[order]
        inter = t_sorted.sum() - t_sorted.cumsum(0)
        union = t_sorted.sum() + (1 - t_sorted).cumsum(0)
        jaccard = 1 - inter / union
        grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        losses.append(torch.dot(F.relu(errors_sorted), grad))
    return torch.stack(losses).mean()


def ssim_map(x: Tensor, y: Tensor, window: int = 7) -> Tensor:
    """Per-pixel SSIM with a box window (cheap; the exact Gaussian one lives in metrics)."""
    pad = window // 2
    mu_x = F.avg_pool2d(x, window, 1, pad, count_include_pad=False)
    mu_y = F.avg_pool2d(y, window, 1, pad, count_include_pad=False)
    var_x = F.avg_pool2d(x * x, window, 1, pad, count_include_pad=False) - mu_x**2
    var_y = F.avg_pool2d(y * y, window, 1, pad, count_include_pad=False) - mu_y**2
    cov = F.avg_pool2d(x * y, window, 1, pad, count_include_pad=False) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )


def gradient_l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean L1 distance between the x and y finite differences of two maps."""
    dx = (pred[..., :, 1:] - pred[..., :, :-1]) - (target[..., :, 1:] - target[..., :, :-1])
    dy = (pred[..., 1:, :] - pred[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])
    return dx.abs().mean() + dy.abs().mean()


def align_scale_shift(pred: Tensor, target: Tensor, eps: float = 1e-9) -> Tensor:
    """`pred` after the per-image least-squares scale and shift that best fit it to `target`.

    Closed form from per-image means (no host sync); a flat prediction gets scale 0.
    """
    p, t = pred.flatten(1), target.flatten(1)
    mp, mt = p.mean(1, keepdim=True), t.mean(1, keepdim=True)
    var = ((p - mp) ** 2).mean(1, keepdim=True)
    cov = ((p - mp) * (t - mt)).mean(1, keepdim=True)
    scale = cov / (var + eps)
    return (scale * (p - mp) + mt).view_as(pred)


def gradient_matching(residual: Tensor, scales: int = 4) -> Tensor:
    """MiDaS multi-scale gradient matching: mean |d/dx| + |d/dy| of the residual at `scales`
    scales (each half the last, by taking every other pixel)."""
    total = residual.new_zeros(())
    for k in range(scales):
        r = residual[..., :: 2**k, :: 2**k]
        if r.shape[-1] < 2 or r.shape[-2] < 2:
            break
        total = total + (r[..., :, 1:] - r[..., :, :-1]).abs().mean() + (
            r[..., 1:, :] - r[..., :-1, :]).abs().mean()
    return total


def mask_loss_fn(cfg: LossConfig) -> Callable[[Tensor, Tensor], Tensor]:
    """Loss on mask logits vs a {0, 1} target."""
    if cfg.mask == "mse":
        return lambda logits, t: F.mse_loss(torch.sigmoid(logits), t)
    region = {"bce_dice": soft_dice_loss, "bce_lovasz": lovasz_hinge_loss}.get(cfg.mask)
    if region is not None:
        return lambda logits, t: F.binary_cross_entropy_with_logits(
            logits, t
        ) + cfg.dice_weight * region(logits, t)
    raise DepthkitError(f"unknown mask loss '{cfg.mask}' (choose from: {', '.join(MASK_LOSSES)})")


def depth_loss_fn(cfg: LossConfig) -> Callable[[Tensor, Tensor], Tensor]:
    """Loss on raw depth vs a [0, 1] target."""
    if cfg.depth == "mse":
        return F.mse_loss
    if cfg.depth == "l1_ssim_grad":

        def l1_ssim_grad(pred: Tensor, t: Tensor) -> Tensor:
            ssim = ((1 - ssim_map(pred, t)) / 2).clamp(0, 1).mean()
            return (
                F.l1_loss(pred, t) + cfg.ssim_weight * ssim + cfg.grad_weight * gradient_l1(pred, t)
            )

        return l1_ssim_grad
    if cfg.depth == "l1_ssi_grad":

        def l1_ssi_grad(pred: Tensor, t: Tensor) -> Tensor:
            residual = align_scale_shift(pred, t) - t
            return (F.l1_loss(pred, t) + cfg.align_weight * residual.abs().mean()
                    + cfg.grad_weight * gradient_matching(residual, cfg.grad_scales))

        return l1_ssi_grad
    raise DepthkitError(
        f"unknown depth loss '{cfg.depth}' (choose from: {', '.join(DEPTH_LOSSES)})"
    )


class Criterion:
    """criterion(out, batch) -> (total, {"mask": ..., "depth": ...}); parts are detached."""

    def __init__(self, cfg: LossConfig) -> None:
        self.cfg = cfg = cfg.filled()  # losses left unset: the default recipe's
        self.mask_loss = mask_loss_fn(cfg)
        self.depth_loss = depth_loss_fn(cfg)

    def __call__(self, out: dict[str, Tensor], batch: dict[str, Tensor]) -> tuple[Tensor, dict]:
        # Losses in float32 even under autocast: SSIM's variance terms cancel badly in bf16.
        mask = self.mask_loss(out["mask"].float(), batch["mask"].float())
        depth = self.depth_loss(out["depth"].float(), batch["depth"].float())
        total = self.cfg.mask_weight * mask + self.cfg.depth_weight * depth
        return total, {"mask": mask.detach(), "depth": depth.detach()}


def build_criterion(cfg: LossConfig | None = None) -> Criterion:
    """A Criterion for `cfg` (default: bce_dice + l1_ssi_grad)."""
    return Criterion(cfg or LossConfig())
