"""What a model costs: trainable parameters and forward FLOPs, and the table of every model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from depthkit.model.registry import REGISTERED, create_model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def forward_flops(model: nn.Module, res: int, batch: int = 1) -> float:
    """Forward FLOPs per sample at res x res (torch.utils.flop_counter; conv/matmul only).

    Counted on the meta device (shapes only): the model's parameters and buffers are swapped
    for meta stand-ins for one call, so nothing is computed or copied wherever the model lives.
    """
    from torch.func import functional_call
    from torch.utils.flop_counter import FlopCounterMode

    tensors = (*model.named_parameters(), *model.named_buffers())
    meta = {name: t.detach().to("meta") for name, t in tensors}
    x = torch.zeros(batch, 3, res, res, device="meta")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            functional_call(model, meta, (x, x))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / batch


def describe_models(res: Sequence[int] = (64, 128, 224)) -> list[dict[str, Any]]:
    """Parameters and forward GFLOPs per sample of every registered model."""
    rows = []
    for name in REGISTERED:
        model = create_model(name)
        row: dict[str, Any] = {"model": name, "params": count_parameters(model)}
        for r in res:
            row[f"gflops_{r}"] = forward_flops(model, r) / 1e9
        rows.append(row)
    return rows


def format_models(rows: list[dict[str, Any]]) -> str:
    """The `describe_models` rows as `key=value` lines (what `python -m depthkit.model` prints)."""
    return "\n".join("  ".join(f"{k}={v:,.2f}" if isinstance(v, float) else f"{k}={v:,}"
                               if isinstance(v, int) else f"{k}={v}" for k, v in row.items())
                     for row in rows)
