"""Where a checkpoint's depth errors are, on fresh synthetic samples from rooms it never saw.

Renders `--rooms` rooms from index `--first-room` (past any training set's) times `--fgs`
cut-outs, one placement each, inputs JPEG round-tripped like the dataset, at the model's
resolution (or `--size`), and compares the predicted depth with the exact min-max normalised
target. Reports the depth RMSE, MAE and delta1 overall; per region (the object, its edge band,
the other occlusion edges, floor, ceiling, each wall, furniture): the share of pixels, the
RMSE and the share of all squared error; the RMSE left after fitting each prediction's scale
and shift to its target (what a scale-and-shift-invariant error would see); and the spread of
the per-image RMSE; and the mask IoU of the same samples. Many floor/wall errors with a low
aligned RMSE mean the depth scale is off; errors on edges mean blur.

    python tools/depthcheck.py --checkpoint demo-out/run/last.pt --json dc.json
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from depthkit.core.report import emit_report
from depthkit.eval.fresh import add_room_arguments, fresh_samples
from depthkit.synth.dataset import normalize_depth
from depthkit.synth.scene import SURFACE_NAMES

JUMP = 1.05  # neighbours on different surfaces whose depths differ by this ratio: an occlusion
REGIONS = ("object_edge", "object", "depth_edge", *SURFACE_NAMES)


def dilate(mask: np.ndarray) -> np.ndarray:
    """Binary dilation with the 4-neighbourhood (image borders count as outside)."""
    p = np.pad(mask, 1)
    return p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]


def jumps(depth: np.ndarray, surface: np.ndarray, ratio: float = JUMP) -> np.ndarray:
    """Pixels on either side of an occlusion edge: a 4-neighbour on another surface whose
    depth (metres) differs by more than `ratio` (a room's corners are continuous, not edges)."""
    log_z, cut = np.log(np.maximum(depth, 1e-6)), np.log(ratio)
    dy = (np.diff(surface, axis=0) != 0) & (np.abs(np.diff(log_z, axis=0)) > cut)
    dx = (np.diff(surface, axis=1) != 0) & (np.abs(np.diff(log_z, axis=1)) > cut)
    out = np.zeros(depth.shape, dtype=bool)
    out[1:] |= dy
    out[:-1] |= dy
    out[:, 1:] |= dx
    out[:, :-1] |= dx
    return out


def region_map(mask: np.ndarray, depth: np.ndarray, surface: np.ndarray) -> np.ndarray:
    """Per pixel the REGIONS index (depth in metres); earlier regions win where several apply."""
    edge = dilate(mask) & dilate(~mask)
    out = (surface.astype(np.int16) + 3).astype(np.int8)  # SURFACE_NAMES after the first three
    out[dilate(jumps(depth, surface)) & ~mask] = 2
    out[mask] = 1
    out[edge] = 0
    return out


def aligned(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """`pred` after the least-squares scale and shift that best fit it to `true`."""
    a = np.stack([pred.ravel(), np.ones(pred.size)], 1)
    coef, *_ = np.linalg.lstsq(a, true.ravel(), rcond=None)
    return (a @ coef).reshape(pred.shape)


class DepthTally:
    """Running sums of squared/absolute error, delta1 hits and pixel counts, per region."""

    def __init__(self) -> None:
        n = len(REGIONS)
        self.sq, self.pixels = np.zeros(n), np.zeros(n)
        self.abs_err = self.delta1 = self.valid = self.aligned_sq = 0.0
        self.image_rmse: list[float] = []

    def add(self, pred: np.ndarray, true: np.ndarray, regions: np.ndarray) -> None:
        err2 = (pred - true) ** 2
        self.sq += np.bincount(regions.ravel(), err2.ravel(), len(REGIONS))
        self.pixels += np.bincount(regions.ravel(), minlength=len(REGIONS))
        self.abs_err += float(np.abs(pred - true).sum())
        valid = true >= 1e-3
        p, g = np.maximum(pred[valid], 1e-3), true[valid]
        self.delta1 += float((np.maximum(p / g, g / p) < 1.25).sum())
        self.valid += float(valid.sum())
        self.aligned_sq += float(((aligned(pred, true) - true) ** 2).sum())
        self.image_rmse.append(float(np.sqrt(err2.mean())))

    def figures(self) -> dict[str, object]:
        total_px, total_sq = self.pixels.sum(), max(self.sq.sum(), 1e-12)
        per = np.asarray(self.image_rmse)
        return {
            "depth_rmse": float(np.sqrt(self.sq.sum() / total_px)),
            "depth_mae": self.abs_err / total_px,
            "depth_delta1": self.delta1 / max(self.valid, 1.0),
            "depth_rmse_aligned": float(np.sqrt(self.aligned_sq / total_px)),
            "image_rmse": {"median": float(np.median(per)), "p90": float(np.quantile(per, 0.9)),
                           "max": float(per.max())},
            "regions": {name: {"pixel_share": float(self.pixels[i] / total_px),
                               "rmse": float(np.sqrt(self.sq[i] / max(self.pixels[i], 1))),
                               "error_share": float(self.sq[i] / total_sq)}
                        for i, name in enumerate(REGIONS) if self.pixels[i]},
        }


def run(args: argparse.Namespace) -> dict[str, object]:
    info, samples = fresh_samples(args)
    tally, inter, union = DepthTally(), 0, 0
    for s in samples:
        true = normalize_depth(s.comp.depth).astype(np.float64) / 255.0
        tally.add(s.pred.depth.astype(np.float64), true,
                  region_map(s.comp.mask, s.comp.depth, s.scene.surface))
        inter += int((s.pred.mask & s.comp.mask).sum())
        union += int((s.pred.mask | s.comp.mask).sum())
    return {**info, "samples": len(tally.image_rmse), "mask_iou": inter / max(union, 1),
            **tally.figures()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_room_arguments(p, rooms=20, fgs=30)
    return emit_report(run, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
