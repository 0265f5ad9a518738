"""`unetexp`: the original course model (shared stem, dense mask branch, UNet depth branch)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from depthkit.model.blocks import DenseBlock, Outputs, conv_bn_relu, double_conv


class UnetExp(nn.Module):
    """The course's "UnetExp": shared stem -> dense mask branch + UNet depth branch.

    Its exact layer list was published only as compiled code; this rebuild follows the documented
    structure, with widths chosen so parameters (3.81M vs 3.79M) and FLOPs (21.7 G per 64 px
    sample) match the original's. H and W must be divisible by 8.
    """

    def __init__(
        self,
        stem: int = 32,
        growth: int = 120,
        dense_layers: int = 6,
        widths: Sequence[int] = (64, 64, 128, 128),
        dropout: float = 0.02,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4 = widths
        self.stem = conv_bn_relu(3, stem)  # shared by bg and fgbg
        cin = 2 * stem
        self.dense = DenseBlock(cin, growth, dense_layers)
        self.mask_head = nn.Conv2d(self.dense.out_channels, 1, 1)
        self.enc1, self.enc2 = double_conv(cin, c1), double_conv(c1, c2)
        self.enc3, self.bottom = double_conv(c2, c3), double_conv(c3, c4)
        self.drop = nn.Dropout2d(dropout)
        self.up3, self.dec3 = nn.ConvTranspose2d(c4, c3, 2, 2), double_conv(2 * c3, c3)
        self.up2, self.dec2 = nn.ConvTranspose2d(c3, c2, 2, 2), double_conv(2 * c2, c2)
        self.up1, self.dec1 = nn.ConvTranspose2d(c2, c1, 2, 2), double_conv(2 * c1, c1)
        self.depth_head = nn.Conv2d(c1, 1, 1)

    def forward(self, bg: Tensor, fgbg: Tensor) -> Outputs:
        x = torch.cat([self.stem(bg), self.stem(fgbg)], 1)
        mask = self.mask_head(self.dense(x))
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        b = self.drop(self.bottom(F.max_pool2d(e3, 2)))
        d3 = self.dec3(torch.cat([self.up3(b), e3], 1))
        d2 = self.dec2(torch.cat([self.up2(d3), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return {"mask": mask, "depth": self.depth_head(d1)}
