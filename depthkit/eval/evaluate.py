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
from depthkit.core.images import make_grid, save_image_atomic
from depthkit.core.normalization import denormalize_images
from depthkit.eval.config import EvalConfig
from depthkit.eval.metrics import MetricAccumulator
from depthkit.eval.pictures import GRID_TITLES, grid_row
from depthkit.eval.predict import check_res

log = logging.getLogger(__name__)



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


Renorm = Callable[[torch.Tensor], torch.Tensor]


def renormalizer(src: dict[str, list[float]], dst: dict[str, list[float]],
                 device: torch.device) -> Renorm:
    """x -> x with the loader's normalisation (src) undone and the model's (dst) applied; the
    identity when they are equal. Its constants are built once, on `device`."""
    if src == dst:
        return lambda x: x
    view = (1, -1, 1, 1)
    s_mean, s_std, d_mean, d_std = (
        torch.tensor(v, device=device, dtype=torch.float32).view(view)
        for v in (src["mean"], src["std"], dst["mean"], dst["std"])
    )
    return lambda x: (x * s_std + s_mean - d_mean) / d_std


def denormalize(x: torch.Tensor, norm: dict[str, list[float]]) -> torch.Tensor:
    """Normalised (B, 3, H, W) -> [0, 1]."""
    return denormalize_images(x, norm["mean"], norm["std"])


def resize(x: torch.Tensor, res: int) -> torch.Tensor:
    """Bilinear resize of a (B, C, H, W) batch to res x res (identity when already that)."""
    if x.shape[-2:] == (res, res):
        return x
    return F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)


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
    renorm: dict[str, Renorm]  # bg, fgbg: the loader's normalisation -> the model's

    @property
    def total(self) -> int:
        """Samples the run will see (for a progress bar)."""
        from depthkit.shard.manifest import split_count

        n = split_count(self.manifest, self.cfg.split)
        return n if self.cfg.limit is None else min(n, self.cfg.limit)


def shard_loader() -> Callable[[Any], Any]:
    """build_loader (DALI) where `import nvidia.dali` works, else the webdataset loader (eval
    does not augment, so both give the same batches; no DALI wheel on macOS or Windows)."""
    from depthkit.loader.wds import build_wds_loader, dali_available

    if not dali_available():
        log.info("DALI is not installed: reading the shards with webdataset + Pillow")
        return build_wds_loader
    from depthkit.loader import build_loader

    return build_loader


def prepare(cfg: EvalConfig) -> EvalRun:
    """Check the options, load the model and build the loader (one-line errors, no work)."""
    from depthkit.loader import LoaderConfig
    from depthkit.model.checkpoint import load_model
    from depthkit.shard.manifest import load_manifest, resolutions
    from depthkit.shard.preflight import verify_first

    manifest = load_manifest(cfg.shards)
    if cfg.split not in manifest.get("counts", {}) or cfg.split == "rejected":
        raise DepthkitError(f"--split {cfg.split}: the shards hold train and val")
    if cfg.verify:  # build_loader below runs the quick pre-flight in any case
        verify_first(cfg.shards)
    if cfg.res is not None:
        check_res(cfg.res)
    device = pick_device(cfg.device)
    model, meta = load_model(cfg.checkpoint, device=str(device))
    res = check_res(cfg.res or int(meta["res"]))
    shard_res = pick_shard_res(resolutions(manifest), res, cfg.shard_res)
    loader = shard_loader()(LoaderConfig(
        shards=Path(cfg.shards), split=cfg.split, res=shard_res, batch_size=cfg.batch_size,
        augment=None, shuffle=False, device=str(device), num_threads=cfg.num_threads,
        drop_last=False,
    ))
    renorm = {k: renormalizer(loader.norm[k], meta["norm"][k], device) for k in ("bg", "fgbg")}
    return EvalRun(cfg, model, meta, loader, manifest, device, res, shard_res, renorm)


def _on_device(run: EvalRun, batch: dict[str, torch.Tensor], keep: int | None
               ) -> dict[str, torch.Tensor]:
    """The batch's bg, fgbg, mask and depth as float on the run's device, first `keep` only
    (a no-op for a loader that already yields them there)."""
    out = {k: batch[k].to(run.device, non_blocking=True).float()
           for k in ("bg", "fgbg", "mask", "depth")}
    if keep is not None:
        out = {k: v[:keep] for k, v in out.items()}
    return out


def _predict(run: EvalRun, bg: torch.Tensor, fgbg: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask probability, depth) at the shard resolution; the model runs at its own."""
    from depthkit.model import to_outputs

    out = to_outputs(run.model(resize(run.renorm["bg"](bg), run.res),
                               resize(run.renorm["fgbg"](fgbg), run.res)))
    return (resize(out["mask"], run.shard_res).clamp(0, 1),
            resize(out["depth"], run.shard_res).clamp(0, 1))


def _grid_rows(run: EvalRun, b: dict[str, torch.Tensor], mask_prob: torch.Tensor,
               depth_pred: torch.Tensor, wanted: int) -> list[list[np.ndarray]]:
    """Grid rows of the batch's first `wanted` samples (inputs shown denormalised)."""
    norm = run.loader.norm
    return [grid_row(denormalize(b["bg"][i:i + 1], norm["bg"])[0],
                     denormalize(b["fgbg"][i:i + 1], norm["fgbg"])[0],
                     b["mask"][i], mask_prob[i], b["depth"][i], depth_pred[i])
            for i in range(min(wanted, b["bg"].shape[0]))]


def _run_info(run: EvalRun, samples: int, seconds: float) -> dict[str, Any]:
    """What was evaluated, with what, and how fast (the JSON's non-metric keys)."""
    from depthkit.shard.manifest import split_count

    cfg = run.cfg
    return {
        "checkpoint": str(cfg.checkpoint),
        "shards": str(cfg.shards),
        "split": cfg.split,
        "split_samples": split_count(run.manifest, cfg.split),
        "model": run.meta.get("model_name"),
        "model_res": run.res,
        "shard_res": run.shard_res,
        "epoch": run.meta.get("epoch"),
        "step": run.meta.get("step"),
        "device": str(run.device),
        "seconds": round(seconds, 3),
        "samples_per_s": round(samples / seconds, 1) if seconds > 0 else None,
    }


@torch.no_grad()
def run_eval(run: EvalRun, progress: Callable[..., None] | None = None) -> EvalResult:
    """Run the model over the split and return metrics, run info and grid rows."""
    cfg = run.cfg
    acc = MetricAccumulator()
    rows: list[list[np.ndarray]] = []
    seen = 0
    start = time.perf_counter()
    for batch in run.loader:
        if cfg.limit is not None and seen >= cfg.limit:
            break
        b = _on_device(run, batch, None if cfg.limit is None else cfg.limit - seen)
        mask_prob, depth_pred = _predict(run, b["bg"], b["fgbg"])
        acc.update(mask_prob, b["mask"], depth_pred, b["depth"])
        rows += _grid_rows(run, b, mask_prob, depth_pred, cfg.grid_samples - len(rows))
        seen += b["bg"].shape[0]
        if progress is not None:
            progress(b["bg"].shape[0])  # a Python int: the bar reads no tensor
    acc.reduce()
    metrics = acc.compute()  # the one read of the sums, which also waits for the device
    seconds = time.perf_counter() - start
    if metrics["samples"] == 0:
        raise DepthkitError(f"no '{cfg.split}' samples in {cfg.shards} at {run.shard_res} px")
    return EvalResult(metrics=metrics, info=_run_info(run, metrics["samples"], seconds),
                      grid_rows=rows)


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
    save_image_atomic(make_grid(result.grid_rows, GRID_TITLES, cell=size,
                                         depth_bar=True), Path(path))


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
