"""Two-head networks: (bg, fgbg) -> {"mask": logits, "depth": raw}, built by `create_model(name)`.

- `unetexp`: the original course model (shared 3->32 stem, dense full-resolution mask branch,
  UNet depth branch), rebuilt from its description; ~3.8M parameters, ~22 GFLOPs per 64 px sample.
- `diffunet` (the default): a small UNet that sees bg, fgbg and their explicit difference
  |fgbg - bg| and works at half resolution; a fraction of the FLOPs (see `describe_models`).
  The difference input is what lets it find the foreground in photos it never saw.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from depthkit.core.errors import DepthkitError

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


# ---------------------------------------------------------------------------------------------
# The original model, done cleanly
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# depthkit's default: a difference-fed UNet at reduced resolution
# ---------------------------------------------------------------------------------------------


def _head(channels: int, convs: int) -> nn.Module:
    """`convs` 3x3 conv-BN-ReLU, then a 1x1 conv to one output channel.

    With no convs it is the bare 1x1 conv, so checkpoints made before `head_refine` still load.
    """
    out = nn.Conv2d(channels, 1, 1)
    if not convs:
        return out
    return nn.Sequential(*(conv_bn_relu(channels, channels) for _ in range(convs)), out)


class DiffUNet(nn.Module):
    """Small UNet on [fgbg, bg, |fgbg - bg|] that runs its body at 1/`reduce` resolution.

    A thin full-resolution stem keeps mask edges sharp: its features join the upsampled body
    output before the two 1x1 heads, followed by `refine` more full-resolution 3x3 convs that
    both heads share and `head_refine` convs that each head has on its own (so the sharp mask
    and the smooth depth do not compete for the same few channels).
    `diff=False` drops the difference input (ablation).
    H and W must be divisible by 8 * reduce.
    """

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 96, 128),
        stem: int = 16,
        reduce: int = 2,
        diff: bool = True,
        refine: int = 0,
        head_refine: int = 0,
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
        self.mask_head = _head(stem, head_refine)
        self.depth_head = _head(stem, head_refine)

    def forward(self, bg: Tensor, fgbg: Tensor) -> Outputs:
        parts = [fgbg, bg, (fgbg - bg).abs()] if self.diff else [fgbg, bg]
        s = self.stem(torch.cat(parts, 1))
        x = self.inc(self.down(s))
        skips = []
        for enc in self.encs:
            skips.append(x)
            x = enc(F.max_pool2d(x, 2))
        for dec, skip in zip(self.decs, reversed(skips), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = dec(torch.cat([x, skip], 1))
        if self.reduce > 1:
            x = F.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False)
        x = self.refine(self.fuse(torch.cat([x, s], 1)))
        return {"mask": self.mask_head(x), "depth": self.depth_head(x)}


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

# name -> (constructor, default kwargs). "default" is an alias resolved by `resolve_name`.
_REGISTRY: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {
    "diffunet": (DiffUNet, {}),
    "diffunet-full": (DiffUNet, {"reduce": 1, "widths": (16, 32, 64, 128)}),
    "diffunet-nodiff": (DiffUNet, {"diff": False}),
    "unetexp": (UnetExp, {}),
}
DEFAULT_MODEL = "diffunet"
MODEL_NAMES: tuple[str, ...] = ("default", *_REGISTRY)


def resolve_name(name: str) -> str:
    """Concrete registry name for `name` ("default" -> the default model)."""
    name = DEFAULT_MODEL if name == "default" else name
    if name not in _REGISTRY:
        raise DepthkitError(f"unknown model '{name}' (choose from: {', '.join(MODEL_NAMES)})")
    return name


def model_kwargs(name: str, **kwargs: Any) -> dict[str, Any]:
    """The full constructor kwargs of a model (defaults merged), as stored in checkpoints."""
    merged = {**_REGISTRY[resolve_name(name)][1], **kwargs}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()}


def parse_model_options(items: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings (VALUE a Python literal: 16, 2, "(16,32,48,64)") -> kwargs."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise DepthkitError(f"--model-option '{item}': expected KEY=VALUE, e.g. stem=16")
        try:
            options[key.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            raise DepthkitError(f"--model-option '{item}': VALUE must be a number, a tuple "
                                "or a quoted string") from None
    return options


def create_model(name: str = "default", **kwargs: Any) -> nn.Module:
    """Build a model by name (see MODEL_NAMES); forward(bg, fgbg) -> {"mask", "depth"}."""
    ctor, _ = _REGISTRY[resolve_name(name)]
    try:
        return ctor(**model_kwargs(name, **kwargs))
    except TypeError as err:
        raise DepthkitError(f"model '{name}': bad options {kwargs}: {err}") from None


def to_outputs(out: Outputs) -> Outputs:
    """Network outputs -> {"mask": probability in [0, 1], "depth": clamped to [0, 1]}."""
    return {"mask": torch.sigmoid(out["mask"].float()), "depth": out["depth"].float().clamp(0, 1)}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def forward_flops(model: nn.Module, res: int, batch: int = 1) -> float:
    """Forward FLOPs per sample at res x res (torch.utils.flop_counter; conv/matmul only)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    x = torch.zeros(batch, 3, res, res, device=device)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, x)
    model.train(was_training)
    return counter.get_total_flops() / batch


def describe_models(res: Sequence[int] = (64, 128, 224)) -> list[dict[str, Any]]:
    """Parameters and forward GFLOPs per sample of every registered model."""
    rows = []
    for name in _REGISTRY:
        model = create_model(name)
        row: dict[str, Any] = {"model": name, "params": count_parameters(model)}
        for r in res:
            row[f"gflops_{r}"] = forward_flops(model, r) / 1e9
        rows.append(row)
    return rows


if __name__ == "__main__":  # python -m depthkit.model.networks: the models table
    for row in describe_models():
        print("  ".join(f"{k}={v:,.2f}" if isinstance(v, float) else f"{k}={v:,}"
                        if isinstance(v, int) else f"{k}={v}" for k, v in row.items()))
