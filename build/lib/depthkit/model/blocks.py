"""Layer blocks the networks are built from: conv-BN-ReLU, the UNet level, dense block, heads."""

from __future__ import annotations

import torch
from torch import Tensor, nn

# What every network's forward returns: {"mask": logits, "depth": raw}, both (B, 1, H, W).
Outputs = dict[str, Tensor]


def conv_bn_relu(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    """Conv (no bias, BN follows) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def double_conv(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU, the UNet level block."""
    return nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))


class DenseBlock(nn.Module):
    """DenseNet-style block: every layer sees the concatenation of all earlier outputs."""

    def __init__(self, cin: int, growth: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(conv_bn_relu(cin + i * growth, growth) for i in range(layers))
        self.out_channels = cin + layers * growth

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)


def conv_head(channels: int, convs: int) -> nn.Module:
    """`convs` 3x3 conv-BN-ReLU, then a 1x1 conv to one output channel.

    With no convs it is the bare 1x1 conv, so checkpoints made before `head_refine` still load.
    """
    out = nn.Conv2d(channels, 1, 1)
    if not convs:
        return out
    return nn.Sequential(*(conv_bn_relu(channels, channels) for _ in range(convs)), out)
