"""`depthkit eval`: metrics of a checkpoint on a shard split, a table, JSON and a picture grid.

The loader reads the shards at one of their stored resolutions (`shard_res`, default: the
model's resolution when the shards hold it, else the largest they hold). The model runs at its
checkpoint's resolution (or `res`): inputs are resized to it and the outputs back to the shard
resolution, so the metrics are always taken against the stored targets, unresampled.
Metric definitions: `depthkit.eval.metrics`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from depthkit.core.atomic import write_atomic
from depthkit.core.dist import pick_device
from depthkit.core.errors import DepthkitError
from depthkit.core.images import colorize_depth, make_grid, save_image_atomic, to_uint8
from depthkit.core.normalization import denormalize_images
from depthkit.eval.metrics import MetricAccumulator
from depthkit.eval.predict import check_res

log = logging.getLogger(__name__)

GRID_TITLES = ("bg", "fgbg", "true mask", "pred mask", "true depth", "pred depth", "mask error")


@dataclass(frozen=True)
class EvalConfig:
    """Options of `depthkit eval`."""

    checkpoint: Path
    shards: Path
    split: str = "val"
    res: int | None = None  # model resolution; None = the checkpoint's
    shard_res: int | None = None  # shard copy to read; None = see module docstring
    batch_size: int = 32
    device: str = "auto"
    num_threads: int = 2
    grid_samples: int = 8  # rows of the picture grid
    limit: int | None = None  # stop after this many samples (quick looks); None = all


@dataclass
class EvalResult:
    """What an evaluation produced: the metrics, run info, and the grid rows (uint8 images)."""

    metrics: dict[str, float]
    info: dict[str, Any]
    grid_rows: list[list[np.ndarray]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """Metrics (flat, the documented keys) followed by run information."""
        return {**self.metrics, **self.info}


def pick_shard_res(available: list[int], model_res: int, wanted: int | None) -> int:
    """The shard resolution to read (see module docstring)."""
    if wanted is not None:
        if wanted not in available:
            have = ", ".join(map(str, available))
            raise DepthkitError(f"--shard-res {wanted}: the shards hold {have} px")
        return wanted
    return model_res if model_res in available else max(available)


def renormalize(x: torch.Tensor, src: dict[str, list[float]], dst: dict[str, list[float]]
                ) -> torch.Tensor:
    """Undo the loader's normalisation (src) and apply the model's (dst); no-op if equal."""
    if src == dst:
        return x
    view = (1, -1, 1, 1)
    s_mean, s_std, d_mean, d_std = (
        torch.tensor(v, device=x.device, dtype=x.dtype).view(view)
        for v in (src["mean"], src["std"], dst["mean"], dst["std"])
    )
    return (x * s_std + s_mean - d_mean) / d_std


def denormalize(x: torch.Tensor, norm: dict[str, list[float]]) -> torch.Tensor:
    """Normalised (B, 3, H, W) -> [0, 1]."""
    return denormalize_images(x, norm["mean"], norm["std"])


def resize(x: torch.Tensor, res: int) -> torch.Tensor:
    """Bilinear resize of a (B, C, H, W) batch to res x res (identity when already that)."""
    if x.shape[-2:] == (res, res):
        return x
    return F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)


def error_overlay(fgbg: np.ndarray, pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """fgbg dimmed to gray, false positives red, false negatives cyan (uint8 RGB)."""
    gray = (fgbg.astype(np.float32).mean(axis=2, keepdims=True) * 0.4).astype(np.uint8)
    out = np.repeat(gray, 3, axis=2)
    out[pred & ~true] = (255, 40, 40)
    out[~pred & true] = (0, 220, 255)
    return out


def grid_row(bg: torch.Tensor, fgbg: torch.Tensor, mask: torch.Tensor, mask_prob: torch.Tensor,
             depth: torch.Tensor, depth_pred: torch.Tensor) -> list[np.ndarray]:
    """The seven pictures of one sample (inputs in [0, 1], (C, H, W) each)."""
    def hwc(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().permute(1, 2, 0).numpy()

    fg = to_uint8(hwc(fgbg))
    return [
        to_uint8(hwc(bg)), fg, to_uint8(hwc(mask))[..., 0], to_uint8(hwc(mask_prob))[..., 0],
        colorize_depth(hwc(depth)[..., 0]), colorize_depth(hwc(depth_pred)[..., 0]),
        error_overlay(fg, hwc(mask_prob)[..., 0] >= 0.5, hwc(mask)[..., 0] >= 0.5),
    ]


@dataclass
class EvalRun:
    """A checked, ready evaluation: model loaded, loader built (errors surface here)."""

    cfg: EvalConfig
    model: torch.nn.Module
    meta: dict[str, Any]
    loader: Any
    manifest: dict[str, Any]
    device: torch.device
    res: int
    shard_res: int

    @property
    def total(self) -> int:
        """Samples the run will see (for a progress bar)."""
        from depthkit.shard.manifest import split_count

        n = split_count(self.manifest, self.cfg.split)
        return n if self.cfg.limit is None else min(n, self.cfg.limit)


def prepare(cfg: EvalConfig) -> EvalRun:
    """Check the options, load the model and build the loader (one-line errors, no work)."""
    from depthkit.loader.pipeline import LoaderConfig, build_loader
    from depthkit.model.checkpoint import load_model
    from depthkit.shard.manifest import load_manifest, resolutions

    manifest = load_manifest(cfg.shards)
    if cfg.split not in manifest.get("counts", {}) or cfg.split == "rejected":
        raise DepthkitError(f"--split {cfg.split}: the shards hold train and val")
    if cfg.res is not None:
        check_res(cfg.res)
    device = pick_device(cfg.device)
    model, meta = load_model(cfg.checkpoint, device=str(device))
    res = check_res(cfg.res or int(meta["res"]))
    shard_res = pick_shard_res(resolutions(manifest), res, cfg.shard_res)
    loader = build_loader(LoaderConfig(
        shards=Path(cfg.shards), split=cfg.split, res=shard_res, batch_size=cfg.batch_size,
        augment=None, shuffle=False, device=device.type, num_threads=cfg.num_threads,
        drop_last=False,
    ))
    return EvalRun(cfg, model, meta, loader, manifest, device, res, shard_res)


@torch.no_grad()
def run_eval(run: EvalRun, progress: Callable[..., None] | None = None) -> EvalResult:
    """Run the model over the split and return metrics, run info and grid rows."""
    from depthkit.model.networks import to_outputs
    from depthkit.shard.manifest import split_count

    cfg, model, loader, device = run.cfg, run.model, run.loader, run.device
    res, shard_res, model_norm = run.res, run.shard_res, run.meta["norm"]
    acc = MetricAccumulator()
    rows: list[list[np.ndarray]] = []
    seen = 0
    start = time.perf_counter()
    for batch in loader:
        if cfg.limit is not None and seen >= cfg.limit:
            break
        bg = batch["bg"].to(device, non_blocking=True).float()
        fgbg = batch["fgbg"].to(device, non_blocking=True).float()
        mask = batch["mask"].to(device).float()
        depth = batch["depth"].to(device).float()
        if cfg.limit is not None:
            keep = cfg.limit - seen
            bg, fgbg, mask, depth = bg[:keep], fgbg[:keep], mask[:keep], depth[:keep]
        out = to_outputs(model(
            resize(renormalize(bg, loader.norm["bg"], model_norm["bg"]), res),
            resize(renormalize(fgbg, loader.norm["fgbg"], model_norm["fgbg"]), res),
        ))
        mask_prob = resize(out["mask"], shard_res).clamp(0, 1)
        depth_pred = resize(out["depth"], shard_res).clamp(0, 1)
        acc.update(mask_prob, mask, depth_pred, depth)
        for i in range(min(cfg.grid_samples - len(rows), bg.shape[0])):
            rows.append(grid_row(denormalize(bg[i:i + 1], loader.norm["bg"])[0],
                                 denormalize(fgbg[i:i + 1], loader.norm["fgbg"])[0],
                                 mask[i], mask_prob[i], depth[i], depth_pred[i]))
        seen += bg.shape[0]
        if progress is not None:
            progress(bg.shape[0])
    acc.reduce()
    seconds = time.perf_counter() - start
    metrics = acc.compute()
    if metrics["samples"] == 0:
        raise DepthkitError(f"no '{cfg.split}' samples in {cfg.shards} at {shard_res} px")
    info = {
        "checkpoint": str(cfg.checkpoint),
        "shards": str(cfg.shards),
        "split": cfg.split,
        "split_samples": split_count(run.manifest, cfg.split),
        "model": run.meta.get("model_name"),
        "model_res": res,
        "shard_res": shard_res,
        "epoch": run.meta.get("epoch"),
        "step": run.meta.get("step"),
        "device": str(device),
        "seconds": round(seconds, 3),
        "samples_per_s": round(metrics["samples"] / seconds, 1) if seconds > 0 else None,
    }
    return EvalResult(metrics=metrics, info=info, grid_rows=rows)


def evaluate(cfg: EvalConfig, progress: Callable[..., None] | None = None) -> EvalResult:
    """prepare + run_eval in one call."""
    return run_eval(prepare(cfg), progress)


def write_json(result: EvalResult, path: Path) -> None:
    """The metrics and run info as JSON (atomic)."""
    text = json.dumps(result.as_json(), indent=2, allow_nan=True) + "\n"
    write_atomic(Path(path), text.encode(), fsync=False, parents=True)


def write_grid(result: EvalResult, path: Path, cell: int | None = None) -> None:
    """The picture grid: one row per sample, columns GRID_TITLES (atomic PNG)."""
    if not result.grid_rows:
        raise DepthkitError("no samples to draw in the grid")
    size = cell or max(96, result.grid_rows[0][0].shape[0])
    save_image_atomic(make_grid(result.grid_rows, GRID_TITLES, cell=size), Path(path))


TABLE_ROWS = (
    ("mask_iou", "mask IoU (dataset: sum TP / sum union)"),
    ("mask_iou_per_image", "mask IoU (mean per image)"),
    ("mask_dice", "mask Dice"),
    ("mask_acc", "mask pixel accuracy"),
    ("depth_rmse", "depth RMSE (0-1 scale)"),
    ("depth_mae", "depth MAE"),
    ("depth_abs_rel", "depth abs_rel (gt >= 1e-3)"),
    ("depth_delta1", "depth delta < 1.25"),
    ("depth_delta2", "depth delta < 1.25^2"),
    ("depth_delta3", "depth delta < 1.25^3"),
    ("depth_ssim", "depth SSIM (11x11 gaussian)"),
)


def format_table(result: EvalResult) -> str:
    """A plain-text table of the metrics for the terminal."""
    m, info = result.metrics, result.info
    lines = [
        f"{info['split']} split of {info['shards']}: {m['samples']} samples, shards at "
        f"{info['shard_res']} px, model {info['model']} at {info['model_res']} px "
        f"(mask threshold {m['mask_threshold']})",
    ]
    width = max(len(label) for _, label in TABLE_ROWS)
    lines += [f"  {label:<{width}}  {m[key]:.4f}" for key, label in TABLE_ROWS]
    return "\n".join(lines)
