"""Where and how this rank computes: device, autocast precision, memory format, process group."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from depthkit.core.dist import (
    DistInfo,
    dist_from_env,
    init_distributed,
    pick_device,
    shutdown_distributed,
)
from depthkit.core.errors import DepthkitError
from depthkit.train.config import TrainConfig

log = logging.getLogger(__name__)


def pick_amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: None without --amp; bf16 on CPU; bf16 (or fp16) on CUDA."""
    if not cfg.amp:
        return None
    if cfg.amp_dtype not in ("auto", "bf16", "fp16"):
        raise DepthkitError(f"--amp-dtype: '{cfg.amp_dtype}' is not auto, bf16 or fp16")
    if device.type == "cpu":
        if cfg.amp_dtype == "fp16":
            raise DepthkitError("--amp-dtype fp16 needs CUDA; on CPU --amp means bf16 autocast")
        return torch.bfloat16
    # bf16 only where the GPU has bf16 units: emulated bf16 (pre-Ampere) is slower than fp16
    if cfg.amp_dtype == "fp16" or (cfg.amp_dtype == "auto" and not torch.cuda.is_bf16_supported(
            including_emulation=False)):
        return torch.float16
    return torch.bfloat16


@dataclass(frozen=True)
class Runtime:
    """Device, precision and process role of this rank."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    dist: DistInfo

    @property
    def fused_optimizer(self) -> bool:
        """Fused optimiser kernels (CUDA): no host read of the grad scaler's inf check."""
        return self.device.type == "cuda"

    def autocast(self) -> AbstractContextManager:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        fmt = torch.channels_last if self.channels_last else torch.preserve_format
        out = {}
        for k, v in batch.items():
            v = v.to(self.device, non_blocking=True)
            out[k] = v.contiguous(memory_format=fmt) if k in ("bg", "fgbg") else v
        return out


@contextmanager
def distributed_runtime(cfg: TrainConfig) -> Iterator[Runtime]:
    """This rank's Runtime, inside the process group (joined, then left, if it was not up)."""
    info = dist_from_env()
    device = pick_device(cfg.device, info)
    owns_group = info.distributed and not torch.distributed.is_initialized()
    init_distributed(info, device)
    benchmark = torch.backends.cudnn.benchmark
    if device.type == "cuda":  # fixed shapes per stage: let cuDNN time its algorithms once
        torch.backends.cudnn.benchmark = True
    try:
        amp = pick_amp_dtype(cfg, device)
        if amp is not None and device.type == "cpu" and info.is_master:
            log.info("--amp on CPU: bf16 autocast for convolutions/matmuls, no grad scaler; "
                     "fast only on CPUs with bf16 units (AMX/AVX512-BF16), else slower than fp32")
        channels_last = cfg.channels_last if cfg.channels_last is not None else (
            device.type == "cuda")
        yield Runtime(device=device, amp_dtype=amp, channels_last=channels_last, dist=info)
    finally:
        torch.backends.cudnn.benchmark = benchmark
        if owns_group:
            shutdown_distributed()
