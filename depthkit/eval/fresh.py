"""Fresh synthetic samples from rooms a model never saw, each with the model's prediction:
what tools/synthcheck.py (mask errors) and tools/depthcheck.py (depth errors) tally."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from depthkit.core.dist import pick_device
from depthkit.core.errors import DepthkitError
from depthkit.core.images import jpeg_roundtrip
from depthkit.eval.predict import Prediction, check_res, predict_arrays
from depthkit.synth.compose import Composite
from depthkit.synth.dataset import (
    BG_QUALITY,
    FGBG_QUALITY,
    SynthConfig,
    render_sample,
    scene_for,
)
from depthkit.synth.scene import Scene


@dataclass(frozen=True)
class FreshSample:
    """One rendered composite (exact targets), its room and the model's prediction."""

    bg: int
    fg: int
    scene: Scene
    comp: Composite
    pred: Prediction


def add_room_arguments(p: argparse.ArgumentParser, rooms: int, fgs: int) -> None:
    """The options every fresh-room check takes (with its default counts)."""
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--rooms", type=int, default=rooms, help="unseen rooms to render")
    p.add_argument("--first-room", type=int, default=1000,
                   help="index of the first room (past any training set's rooms)")
    p.add_argument("--fgs", type=int, default=fgs, help="cut-outs per room (indices 0..fgs-1)")
    p.add_argument("--size", type=int, default=None, help="render size (default: model res)")
    p.add_argument("--res", type=int, default=None, help="model resolution (default: ckpt's)")
    p.add_argument("--seed", type=int, default=0, help="synth seed (the training set's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", type=Path, default=None, help="write the figures as JSON")


def fresh_samples(args: argparse.Namespace) -> tuple[dict[str, Any], Iterator[FreshSample]]:
    """(what was rendered: checkpoint, model res, size, seed, rooms, fgs; the samples) for
    `--rooms` rooms from `--first-room` times `--fgs` cut-outs, one placement each, inputs
    JPEG round-tripped like the dataset; DepthkitError on bad counts."""
    from depthkit.model.checkpoint import load_model

    if args.rooms < 1 or args.fgs < 1:
        raise DepthkitError("--rooms and --fgs must be at least 1")
    device = pick_device(args.device)
    model, meta = load_model(args.checkpoint, device=str(device))
    res = check_res(args.res or int(meta["res"]))
    size = args.size or res
    cfg = SynthConfig(bgs=args.first_room + args.rooms, fgs=args.fgs, positions=1, res=size,
                      seed=args.seed)
    info = {"checkpoint": str(args.checkpoint), "model_res": res, "size": size,
            "seed": args.seed, "rooms": [args.first_room, args.first_room + args.rooms - 1],
            "fgs": args.fgs}

    def samples() -> Iterator[FreshSample]:
        with torch.inference_mode():
            for bg in range(args.first_room, args.first_room + args.rooms):
                scene = scene_for(cfg.seed, bg, size)
                bg_img = jpeg_roundtrip(scene.image, BG_QUALITY)
                for fg in range(args.fgs):
                    comp = render_sample(cfg, bg, fg, False, 0)
                    fgbg = jpeg_roundtrip(comp.fgbg, FGBG_QUALITY)
                    yield FreshSample(bg, fg, scene, comp,
                                      predict_arrays(model, meta, bg_img, fgbg, res, device))

    return info, samples()

