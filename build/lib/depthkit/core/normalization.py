"""Per-channel input normalisation (the manifest's mean/std), and its inverse for pictures.

Kept free of DALI so predict and eval can use it without building a pipeline.
"""

from __future__ import annotations

from typing import Any

import torch


def _channel_view(values: Any, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)


def normalize_images(x: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    """(x - mean) / std per channel for NCHW images given as uint8 (0-255) or float in [0, 1]."""
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return (x - _channel_view(mean, x)) / _channel_view(std, x)


def denormalize_images(x: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    """Inverse of `normalize_images`, clamped to [0, 1] (for pictures)."""
    x = x.float()
    return (x * _channel_view(std, x) + _channel_view(mean, x)).clamp(0, 1)
