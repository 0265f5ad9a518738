"""`diffunet`, the default model: a small UNet fed bg, fgbg and |fgbg - bg| at reduced resolution.

The difference input is what lets it find the foreground in photos it never saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from depthkit.core.errors import DepthkitError
from depthkit.model.blocks import Outputs, conv_bn_relu, conv_head, double_conv


class DiffUNet(nn.Module):
    """Small UNet on [fgbg, bg, |fgbg - bg|] that runs its body at 1/`reduce` resolution.

    A thin full-resolution stem keeps mask edges sharp: its features join the upsampled body
    output before the two 1x1 heads, followed by `refine` more full-resolution 3x3 convs that
    both heads share and `head_refine` convs that each head has on its own (so the sharp mask
    and the smooth depth do not compete for the same few channels).
    `diff=False` drops the difference input (ablation). `context` adds a global-average-pooled
    summary of the bottleneck back onto it, so room-wide facts reach every pixel where the
    bottleneck does not see the whole image (large inputs).
    H and W must be divisible by 2 ** (len(widths) - 1) * reduce (16 for the defaults).
    """

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 96, 128),
        stem: int = 16,
        reduce: int = 2,
        diff: bool = True,
        refine: int = 0,
        head_refine: int = 0,
        context: bool = False,
    ) -> None:
        super().__init__()
        if reduce not in (1, 2, 4):
            raise DepthkitError(f"diffunet: reduce must be 1, 2 or 4, not {reduce}")
        self.diff, self.reduce = diff, reduce
        cin = 9 if diff else 6
        w = list(widths)
        self.stem = conv_bn_relu(cin, stem)
        self.down = conv_bn_relu(stem, w[0], stride=reduce) if reduce > 1 else nn.Identity()
        self.inc = double_conv(w[0] if reduce > 1 else stem, w[0])
        self.encs = nn.ModuleList(double_conv(w[i], w[i + 1]) for i in range(len(w) - 1))
        self.decs = nn.ModuleList(
            conv_bn_relu(w[i + 1] + w[i], w[i]) for i in reversed(range(len(w) - 1))
        )
        self.fuse = conv_bn_relu(w[0] + stem, stem)
        # Extra full-resolution convs after the fuse: thin parts and holes need them.
        self.refine = nn.Sequential(*(conv_bn_relu(stem, stem) for _ in range(refine)))
        self.mask_head = conv_head(stem, head_refine)
        self.depth_head = conv_head(stem, head_refine)
        self.context = global_context(w[-1]) if context else None

    def forward(self, bg: Tensor, fgbg: Tensor) -> Outputs:
        parts = [fgbg, bg, (fgbg - bg).abs()] if self.diff else [fgbg, bg]
        s = self.stem(torch.cat(parts, 1))
        x = self.inc(self.down(s))
        skips = []
        for enc in self.encs:
            skips.append(x)
            x = enc(F.max_pool2d(x, 2))
        if self.context is not None:
            x = x + self.context(x)
        for dec, skip in zip(self.decs, reversed(skips), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = dec(torch.cat([x, skip], 1))
        if self.reduce > 1:
            x = F.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False)
        x = self.refine(self.fuse(torch.cat([x, s], 1)))
        return {"mask": self.mask_head(x), "depth": self.depth_head(x)}


def global_context(channels: int) -> nn.Module:
    """Global average pool -> 1x1 conv -> ReLU -> 1x1 conv: one vector added at every pixel."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1),
                         nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1))
