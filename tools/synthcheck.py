"""Where a checkpoint's mask errors are, on fresh synthetic samples from rooms it never saw.

A shard's validation split is a few hundred samples from a few rooms; this tool renders as
many fresh samples as asked (`--rooms` rooms from index `--first-room`, far past any training
set's, times `--fgs` cut-outs, one placement each, JPEG round-tripped like the dataset) and
reports the mask IoU overall and split by cut-out kind, paste (hard/soft), camouflage, object
size, and whether the cut-out was in training (`--trained-fgs N`: indices below N were).

It also says where the wrong pixels are: on the edge band (pixels with a 4-neighbour of the
other class in the true mask), one pixel further out ("near"), or elsewhere ("far"), and what
the IoU would be were every edge-band pixel right. That tells a resolution limit (edge errors)
from a recognition one (far errors).

    python tools/synthcheck.py --checkpoint demo-out/run/last.pt --trained-fgs 40
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from depthkit.core.report import emit_report
from depthkit.eval.fresh import add_room_arguments, fresh_samples
from depthkit.synth.dataset import sprite_for

SMALL_OBJECT = 60  # mask pixels at 64 px; scaled by (res / 64)^2


def dilate(mask: np.ndarray) -> np.ndarray:
    """Binary dilation with the 4-neighbourhood (image borders count as outside)."""
    p = np.pad(mask, 1)
    return p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]


def edge_band(true: np.ndarray) -> np.ndarray:
    """Pixels on either side of the true mask's boundary (a 4-neighbour has the other class)."""
    return dilate(true) & dilate(~true)


def error_bands(pred: np.ndarray, true: np.ndarray) -> dict[str, int]:
    """Wrong pixels counted by distance to the true edge: edge band, one further, the rest."""
    wrong = pred ^ true
    edge = edge_band(true)
    near = dilate(edge) & ~edge
    return {"edge": int((wrong & edge).sum()), "near": int((wrong & near).sum()),
            "far": int((wrong & ~edge & ~near).sum())}


class Tally:
    """Intersection, union and sample count of one group of samples."""

    def __init__(self) -> None:
        self.inter = self.union = self.samples = 0

    def add(self, pred: np.ndarray, true: np.ndarray) -> None:
        self.inter += int((pred & true).sum())
        self.union += int((pred | true).sum())
        self.samples += 1

    def figures(self) -> dict[str, float]:
        return {"mask_iou": self.inter / max(self.union, 1), "samples": self.samples}


def groups_of(kind: str, hard: bool, camouflage: bool, area: int, small: int,
              seen: bool | None) -> list[str]:
    """The report groups one sample belongs to."""
    names = ["all", f"kind:{kind}", "paste:hard" if hard else "paste:soft",
             "camouflage:yes" if camouflage else "camouflage:no",
             "size:small" if area < small else "size:big"]
    if seen is not None:
        names.append("cutout:seen" if seen else "cutout:unseen")
    return names


def run(args: argparse.Namespace) -> dict[str, object]:
    info, samples = fresh_samples(args)
    small = round(SMALL_OBJECT * (info["size"] / 64) ** 2)
    tallies: dict[str, Tally] = {}
    bands = {"edge": 0, "near": 0, "far": 0}
    for s in samples:
        pred, true = s.pred.mask, s.comp.mask
        seen = None if args.trained_fgs is None else s.fg < args.trained_fgs
        kind = sprite_for(args.seed, s.fg, info["size"]).kind
        for name in groups_of(kind, s.comp.hard, s.comp.camouflage, int(true.sum()), small,
                              seen):
            tallies.setdefault(name, Tally()).add(pred, true)
        for key, n in error_bands(pred, true).items():
            bands[key] += n
    everything = tallies["all"]
    wrong = sum(bands.values())
    return {
        **info, "small_object_pixels": small,
        "mask_iou": everything.figures()["mask_iou"], "samples": everything.samples,
        "wrong_pixels": wrong,
        "wrong_share": {k: v / max(wrong, 1) for k, v in bands.items()},
        "mask_iou_if_edge_band_right":
            everything.inter / max(everything.union - bands["edge"], 1),
        "groups": {k: v.figures() for k, v in sorted(tallies.items())},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_room_arguments(p, rooms=10, fgs=60)
    p.add_argument("--trained-fgs", type=int, default=None,
                   help="cut-outs 0..N-1 were in training: report seen/unseen separately")
    return emit_report(run, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
