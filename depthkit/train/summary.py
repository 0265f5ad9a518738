"""Text summaries of a run: one line per epoch record (logged as it ends), and the end-of-run
report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from depthkit.train.config import TrainConfig

SUMMARY_KEYS = ("train_loss", "train_mask", "train_depth", "val_loss", "val_mask_iou",
                "val_depth_rmse", "samples_per_s")


def summary_line(record: dict[str, Any]) -> str:
    """A one-line summary of an epoch record (losses, key metrics, speed)."""
    return " ".join(f"{k}={record[k]:.4g}" for k in SUMMARY_KEYS if k in record)


def format_train_summary(result: dict[str, Any], cfg: TrainConfig) -> str:
    """The end-of-run summary (empty on non-master ranks, which return no history)."""
    if not result.get("master", True):
        return ""
    if result.get("nothing_to_do"):
        return str(result["nothing_to_do"])
    # each epoch's line was logged when it ended: not repeated here
    lines = [f"trained {result['epochs']} epoch(s), {result['steps']} steps in "
             f"{result['seconds']:.0f} s; model {result['params']:,} parameters"]
    written = [str(Path(cfg.out) / name) for name in ("last.pt", "best.pt")
               if (Path(cfg.out) / name).is_file()]
    lines.append(f"checkpoints: {', '.join(written) or 'none'}; TensorBoard: {cfg.tb_dir}")
    return "\n".join(lines)
