"""Training: config, runtime (precision, devices, DDP), losses, optimisers, the loop, saving.

The config names are torch-free; the rest load on first use, so reading `TrainConfig` (as the
CLI does to build `depthkit train`) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from depthkit.core.lazy import lazy_exports
from depthkit.train.config import LossConfig, Stage, TrainConfig, parse_schedule

if TYPE_CHECKING:
    from depthkit.train.loop import TrainState, train_one_epoch, validate
    from depthkit.train.losses import build_criterion
    from depthkit.train.runtime import Runtime, pick_amp_dtype
    from depthkit.train.summary import format_train_summary
    from depthkit.train.trainer import Trainer, fit

_LAZY = {
    "build_criterion": "depthkit.train.losses",
    "TrainState": "depthkit.train.loop",
    "train_one_epoch": "depthkit.train.loop",
    "validate": "depthkit.train.loop",
    "Runtime": "depthkit.train.runtime",
    "pick_amp_dtype": "depthkit.train.runtime",
    "format_train_summary": "depthkit.train.summary",
    "Trainer": "depthkit.train.trainer",
    "fit": "depthkit.train.trainer",
}

__all__ = ["LossConfig", "Runtime", "Stage", "TrainConfig", "TrainState", "Trainer",
           "build_criterion", "fit", "format_train_summary", "parse_schedule", "pick_amp_dtype",
           "train_one_epoch", "validate"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
