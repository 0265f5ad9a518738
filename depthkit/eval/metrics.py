"""Mask and depth quality metrics, accumulated as exact sums so they are reducible across ranks.

Definitions (all on [0, 1] maps, shapes (B, 1, H, W)):

Mask -- a pixel is predicted foreground when its probability is >= MASK_THRESHOLD (0.5) and is
truly foreground when the target is >= 0.5. With TP/FP/FN/TN summed over every pixel of every
image seen:

- ``mask_iou``   dataset-level IoU = sum TP / sum (TP + FP + FN) (pooled, like a confusion
  matrix; large and small objects weigh by their pixels).
- ``mask_iou_per_image`` mean over images of each image's IoU (an image whose target and
  prediction are both empty counts as 1).
- ``mask_dice``  dataset-level Dice = 2 TP / (2 TP + FP + FN).
- ``mask_acc``   pixel accuracy = (TP + TN) / all pixels.

Depth -- ``p`` = prediction, ``g`` = ground truth, both in [0, 1] (0 = near, 1 = far):

- ``depth_rmse`` sqrt(mean over all pixels of (p - g)^2); ``depth_mae`` mean |p - g|.
- ``depth_abs_rel`` mean |p - g| / g, and ``depth_delta{1,2,3}`` the fraction of pixels with
  max(p/g, g/p) < 1.25^k, ``depth_log10`` mean |log10 p - log10 g|. These divide by the
  ground truth, so they are taken only over pixels with g >= DEPTH_EPS (1e-3; a uint8 depth map
  has a value of exactly 0 at its nearest pixels, which would divide by zero); p is clamped to
  at least DEPTH_EPS there. ``depth_valid_fraction`` says how many pixels that kept.
- ``depth_ssim`` mean over images of the mean SSIM map (Gaussian 11x11 window, sigma 1.5,
  C1 = 0.01^2, C2 = 0.03^2 for a data range of 1; no padding, window shrunk for images < 11 px;
  computed in float64).

``samples`` is the number of images seen. Every figure is a ratio of sums, so results over many
batches equal those over one big batch, and `reduce()` all-reduces the sums once over ranks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from depthkit.shard.schema import MASK_THRESHOLD

DEPTH_EPS = 1e-3
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2

# Order of the running sums inside the accumulator's single float64 vector.
_SUMS = (
    "tp", "fp", "fn", "tn", "iou_img",
    "sq_err", "abs_err", "pixels",
    "rel_err", "log10_err", "delta1", "delta2", "delta3", "valid",
    "ssim", "samples",
)
_INDEX = {name: i for i, name in enumerate(_SUMS)}


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian of `size` taps (float64), built on `device` (no host copy)."""
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def ssim_per_image(
    x: torch.Tensor, y: torch.Tensor, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA
) -> torch.Tensor:
    """SSIM of each image pair (B, C, H, W) in [0, 1] -> (B,): the mean of the SSIM map."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two equal (B, C, H, W) tensors, got {x.shape}, {y.shape}")
    size = min(window, x.shape[-2], x.shape[-1])
    size -= 1 - size % 2  # odd, so the window has a centre
    # float64: var = E[x^2] - mu^2 cancels badly in float32 (errors ~1e-4 of SSIM).
    g = gaussian_window(size, sigma, device=x.device)
    c = x.shape[1]
    kh = g.view(1, 1, size, 1).repeat(c, 1, 1, 1)
    kw = g.view(1, 1, 1, size).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    x = x.double()
    y = y.double()
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return (num / den).flatten(1).mean(1)


class MetricAccumulator:
    """Running sums of mask and depth metrics over batches (and, after `reduce()`, ranks).

    Usage: ``acc.update(mask_prob, mask_true, depth_pred, depth_true)`` per batch, then
    ``acc.reduce()`` (a no-op without torch.distributed) and ``acc.compute()``. The sums stay
    on the inputs' device: `update` never reads a value to the host, `compute` reads them once.
    """

    def __init__(self, threshold: float = MASK_THRESHOLD, depth_eps: float = DEPTH_EPS) -> None:
        self.threshold = threshold
        self.depth_eps = depth_eps
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._sums: torch.Tensor | None = None
        self._reduced = False

    @torch.no_grad()
    def update(
        self,
        mask_prob: torch.Tensor,
        mask_true: torch.Tensor,
        depth_pred: torch.Tensor,
        depth_true: torch.Tensor,
    ) -> None:
        """Add one batch: four tensors (B, 1, H, W) in [0, 1] (mask_prob = sigmoid output)."""
        if self._reduced:
            raise RuntimeError("update() after reduce(): call reset() first")
        shape = mask_prob.shape
        for name, t in (("mask_true", mask_true), ("depth_pred", depth_pred),
                        ("depth_true", depth_true)):
            if t.shape != shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, mask_prob {tuple(shape)}")
        if mask_prob.dim() != 4:
            raise ValueError(f"metrics need (B, 1, H, W) tensors, got {tuple(shape)}")
        samples = torch.full((1,), float(shape[0]), dtype=torch.float64, device=depth_pred.device)
        values = torch.cat([self._mask_sums(mask_prob, mask_true),
                            self._depth_sums(depth_pred, depth_true), samples])
        self._sums = values if self._sums is None else self._sums + values.to(self._sums.device)

    def _mask_sums(self, mask_prob: torch.Tensor, mask_true: torch.Tensor) -> torch.Tensor:
        """The batch's tp, fp, fn, tn and summed per-image IoU (float64, _SUMS order)."""
        dims = (1, 2, 3)
        pred = mask_prob.float() >= self.threshold
        true = mask_true.float() >= MASK_THRESHOLD
        tp_img = (pred & true).sum(dims).double()
        fp_img = (pred & ~true).sum(dims).double()
        fn_img = (~pred & true).sum(dims).double()
        union = tp_img + fp_img + fn_img
        iou_img = torch.where(union > 0, tp_img / union.clamp(min=1), torch.ones_like(union))
        n_pix = float(pred.numel())  # a Python scalar: no host-built tensor
        return torch.stack([
            tp_img.sum(), fp_img.sum(), fn_img.sum(), n_pix - union.sum(), iou_img.sum(),
        ])

    def _depth_sums(self, depth_pred: torch.Tensor, depth_true: torch.Tensor) -> torch.Tensor:
        """The batch's depth error sums, sq_err .. ssim (float64, _SUMS order)."""
        p = depth_pred.float()
        g = depth_true.float()
        err = p - g
        valid = g >= self.depth_eps
        gv = g.clamp(min=self.depth_eps)
        pv = p.clamp(min=self.depth_eps)
        ratio = torch.maximum(pv / gv, gv / pv)
        vf = valid.double()

        def vsum(t: torch.Tensor) -> torch.Tensor:
            return (t.double() * vf).sum()

        return torch.stack([
            (err.double() ** 2).sum(), err.double().abs().sum(),
            torch.full((), float(p.numel()), dtype=torch.float64, device=p.device),
            vsum(err.abs() / gv), vsum((torch.log10(pv) - torch.log10(gv)).abs()),
            vsum(ratio < 1.25), vsum(ratio < 1.25**2), vsum(ratio < 1.25**3), vf.sum(),
            ssim_per_image(p, g).double().sum(),
        ])

    def reduce(self) -> None:
        """Sum the running totals over all ranks (once); a no-op without torch.distributed."""
        if self._reduced:
            return
        self._reduced = True
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        sums = self._sums
        if sums is None:
            sums = torch.zeros(len(_SUMS), dtype=torch.float64)
        if dist.get_backend() != "nccl":
            device = torch.device("cpu")
        elif sums.device.type == "cuda":  # where the sums are: the rank's own GPU
            device = sums.device
        else:
            device = torch.device("cuda", torch.cuda.current_device())
        sums = sums.to(device)
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
        self._sums = sums

    def sums(self) -> dict[str, float]:
        """The raw running sums (for logging or checking)."""
        if self._sums is None:
            return {name: 0.0 for name in _SUMS}
        return dict(zip(_SUMS, self._sums.cpu().tolist(), strict=True))

    def compute(self) -> dict[str, float]:
        """The metrics (see the module docstring); NaN for a figure with nothing to average."""
        s = self.sums()

        def ratio(num: float, den: float) -> float:
            return num / den if den > 0 else math.nan

        union = s["tp"] + s["fp"] + s["fn"]
        return {
            "mask_iou": ratio(s["tp"], union) if union > 0 else (1.0 if s["samples"] else math.nan),
            "mask_iou_per_image": ratio(s["iou_img"], s["samples"]),
            "mask_dice": ratio(2 * s["tp"], 2 * s["tp"] + s["fp"] + s["fn"])
            if union > 0 else (1.0 if s["samples"] else math.nan),
            "mask_acc": ratio(s["tp"] + s["tn"], s["pixels"]),
            "mask_threshold": self.threshold,
            "depth_rmse": math.sqrt(ratio(s["sq_err"], s["pixels"])) if s["pixels"] else math.nan,
            "depth_mae": ratio(s["abs_err"], s["pixels"]),
            "depth_abs_rel": ratio(s["rel_err"], s["valid"]),
            "depth_log10": ratio(s["log10_err"], s["valid"]),
            "depth_delta1": ratio(s["delta1"], s["valid"]),
            "depth_delta2": ratio(s["delta2"], s["valid"]),
            "depth_delta3": ratio(s["delta3"], s["valid"]),
            "depth_valid_fraction": ratio(s["valid"], s["pixels"]),
            "depth_ssim": ratio(s["ssim"], s["samples"]),
            "samples": int(s["samples"]),
        }
