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
from pathlib import Path

import numpy as np
import torch

from depthkit.core.dist import pick_device
from depthkit.core.errors import DepthkitError
from depthkit.core.images import jpeg_roundtrip
from depthkit.core.report import emit_report
from depthkit.eval.predict import check_res, predict_arrays
from depthkit.synth.dataset import (
    BG_QUALITY,
    FGBG_QUALITY,
    SynthConfig,
    render_sample,
    scene_for,
    sprite_for,
)

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
    from depthkit.model.checkpoint import load_model

    if args.rooms < 1 or args.fgs < 1:
        raise DepthkitError("--rooms and --fgs must be at least 1")
    device = pick_device(args.device)
    model, meta = load_model(args.checkpoint, device=str(device))
    res = check_res(args.res or int(meta["res"]))
    size = args.size or res
    cfg = SynthConfig(bgs=args.first_room + args.rooms, fgs=args.fgs, positions=1, res=size,
                      seed=args.seed)
    small = round(SMALL_OBJECT * (size / 64) ** 2)
    tallies: dict[str, Tally] = {}
    bands = {"edge": 0, "near": 0, "far": 0}
    with torch.inference_mode():
        for bg in range(args.first_room, args.first_room + args.rooms):
            bg_img = jpeg_roundtrip(scene_for(cfg.seed, bg, size).image, BG_QUALITY)
            for fg in range(args.fgs):
                comp = render_sample(cfg, bg, fg, False, 0)
                fgbg = jpeg_roundtrip(comp.fgbg, FGBG_QUALITY)
                pred = predict_arrays(model, meta, bg_img, fgbg, res, device).mask
                true = comp.mask
                seen = None if args.trained_fgs is None else fg < args.trained_fgs
                kind = sprite_for(cfg.seed, fg, size).kind
                for name in groups_of(kind, comp.hard, comp.camouflage, int(true.sum()), small,
                                      seen):
                    tallies.setdefault(name, Tally()).add(pred, true)
                for key, n in error_bands(pred, true).items():
                    bands[key] += n
    everything = tallies["all"]
    wrong = sum(bands.values())
    return {
        "checkpoint": str(args.checkpoint), "model_res": res, "size": size, "seed": args.seed,
        "rooms": [args.first_room, args.first_room + args.rooms - 1], "fgs": args.fgs,
        "small_object_pixels": small,
        "mask_iou": everything.figures()["mask_iou"], "samples": everything.samples,
        "wrong_pixels": wrong,
        "wrong_share": {k: v / max(wrong, 1) for k, v in bands.items()},
        "mask_iou_if_edge_band_right":
            everything.inter / max(everything.union - bands["edge"], 1),
        "groups": {k: v.figures() for k, v in sorted(tallies.items())},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--rooms", type=int, default=10, help="unseen rooms to render")
    p.add_argument("--first-room", type=int, default=1000,
                   help="index of the first room (past any training set's rooms)")
    p.add_argument("--fgs", type=int, default=60, help="cut-outs per room (indices 0..fgs-1)")
    p.add_argument("--trained-fgs", type=int, default=None,
                   help="cut-outs 0..N-1 were in training: report seen/unseen separately")
    p.add_argument("--size", type=int, default=None, help="render size (default: model res)")
    p.add_argument("--res", type=int, default=None, help="model resolution (default: ckpt's)")
    p.add_argument("--seed", type=int, default=0, help="synth seed (the training set's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    return emit_report(run, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
