"""`depthkit demo`: the whole flow on a small synthetic set, on the CPU, in minutes.

synth (original layout, 64 px) -> shard (whole backgrounds held out for validation) ->
train at 64 px -> eval on the held-out backgrounds -> metrics JSON + picture grid.
Everything is seeded, so a rerun gives the same data and (up to thread scheduling in the
CPU kernels) the same model. Folder layout under `out`::

    school/        the synthetic dataset (original layout)
    shards/        its shards at 64 px
    run/           checkpoints (last.pt, best.pt) and TensorBoard logs
    metrics.json   eval metrics on the held-out split + timings of each stage
    grid.png       bg, fgbg, true/predicted mask, true/predicted depth, mask errors
"""

from __future__ import annotations

import logging
import operator
import os
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """The demo recipe: data size, model and optimisation (tuned for 2 CPU cores)."""

    out: Path = field(default=Path("demo-out"), metadata={
        "help": "Folder for data, run and results.", "flags": ("--out", "-o")})
    # Many rooms, each seen with few objects: 45 training rooms were memorised (held-out
    # depth RMSE twice the training one); depth must be learnt from rooms never seen twice.
    bgs: int = 1000  # backgrounds; 10 % of them (100) are held out for validation
    fgs: int = 40  # foregrounds
    fgs_per_bg: int = 2  # of them in each room (the next 2 after the last room's)
    positions: int = 1  # positions per (bg, fg, flip): 1000 x 2 x 2 x 1 = 4,000 samples
    res: int = 64
    val_fraction: float = 0.1
    model: str = "diffunet"
    model_options: dict[str, Any] = field(
        default_factory=lambda: {"widths": (16, 32, 48, 64), "stem": 16, "reduce": 2,
                                 "refine": 1, "head_refine": 1})
    # The mask is what needs the steps: held-out IoU 0.910 after 10 epochs, 0.919 after 16,
    # 0.922 after 20 (docs/quality.md); depth RMSE 0.060 -> 0.057.
    epochs: int = field(default=20, metadata={"help": "Training epochs at 64 px."})
    val_every: int = 5  # epochs between validations (each ~2 s); eval runs at the end anyway
    batch_size: int = 16
    optimizer: str = "adamw"
    lr: float = 4e-3
    mask_loss: str = "bce_lovasz"  # 80 % of the mask errors are edge pixels: optimise IoU
    depth_loss: str = "l1_ssi_grad"  # L1 + scale-and-shift-aligned L1 + gradient matching
    channels_last: bool = True  # NHWC: 85 -> 96 samples/s for this model on 2 cores
    augment: bool = False
    max_steps: int | None = None  # cap on optimiser steps (tests)
    grid_samples: int = 8
    seed: int = field(default=0, metadata={"help": "Seed of data, weights and order."})
    workers: int = 2  # synth/shard processes
    progress: bool = field(default=True, metadata={
        "help": "No progress bar.", "cli_name": "quiet", "parse": operator.not_,
        "to_cli": operator.not_})
    device: str = field(default="cpu", metadata={
        "help": "Device of training and eval: cpu (the recipe is tuned for it), auto or cuda."})


@dataclass
class DemoResult:
    """Where the outputs are, the eval metrics and the time of each stage."""

    metrics_path: Path
    grid_path: Path
    checkpoint: Path
    metrics: dict[str, Any]
    timings: dict[str, float]


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Laps:
    """Wall-clock seconds of each named stage (rounded to 0.1 s), in the order they ran."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def lap(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self.timings[f"{name}_s"] = round(time.perf_counter() - t, 1)


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = log.info) -> DemoResult:
    """Run every stage (see the module docstring); `say` gets one line per finished stage."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    school, shards, run = out / "school", out / "shards", out / "run"
    laps, start, cpu0 = Laps(), time.perf_counter(), cpu_seconds()
    with laps.lap("synth"):
        samples, skipped = make_dataset(cfg, school)
    say(f"synth: {samples} samples ({skipped} already there) in "
        f"{laps.timings['synth_s']} s -> {school}")
    with laps.lap("shard"):
        counts = make_shards(cfg, school, shards)
    say(f"shard: {counts} (val = whole held-out backgrounds) in {laps.timings['shard_s']} s "
        f"-> {shards}")
    with laps.lap("train"):
        trained = train_model(cfg, shards, run)
    say(f"train: {trained['steps']} steps, {trained['params']:,} parameters, in "
        f"{laps.timings['train_s']} s -> {run}")
    checkpoint = run / "last.pt"
    with laps.lap("eval"):
        result = evaluate_model(cfg, checkpoint, shards)
    timings = laps.timings
    timings["total_s"] = round(time.perf_counter() - start, 1)
    timings["cpu_s"] = round(cpu_seconds() - cpu0, 1)
    timings["load_avg_1min"] = round(os.getloadavg()[0], 2)
    return write_results(cfg, result, checkpoint, timings, say)


def make_dataset(cfg: DemoConfig, school: Path) -> tuple[int, int]:
    """Synthesise the dataset (original layout); returns (samples, already there)."""
    from depthkit.synth import SynthConfig, synthesize

    synth_cfg = SynthConfig(bgs=cfg.bgs, fgs=cfg.fgs, positions=cfg.positions, res=cfg.res,
                            seed=cfg.seed, fgs_per_bg=cfg.fgs_per_bg)
    made = synthesize(school, synth_cfg, workers=cfg.workers, progress=cfg.progress)
    return synth_cfg.samples, made.skipped


def make_shards(cfg: DemoConfig, school: Path, shards: Path) -> Any:
    """Shard it at cfg.res, holding out whole backgrounds for validation; returns the counts."""
    from depthkit.shard import ShardConfig, SplitConfig, write_shards

    summary = write_shards([school], ShardConfig(
        out=shards, resolutions=(cfg.res,), shard_size=1000, workers=cfg.workers,
        progress=cfg.progress,
        split=SplitConfig(method="by-bg", val_fraction=cfg.val_fraction, seed=cfg.seed)))
    return summary.counts


def train_model(cfg: DemoConfig, shards: Path, run: Path) -> dict[str, Any]:
    """Train the demo recipe on the CPU into `run`; returns fit's summary."""
    from depthkit.train import LossConfig, Stage, TrainConfig, fit

    return fit(TrainConfig(
        shards=shards, out=run, stages=(Stage(cfg.res, cfg.epochs),), model=cfg.model,
        model_options=dict(cfg.model_options), batch_size=cfg.batch_size,
        optimizer=cfg.optimizer, lr=cfg.lr, loss=LossConfig(mask=cfg.mask_loss,
                                                            depth=cfg.depth_loss),
        channels_last=cfg.channels_last, augment=cfg.augment, seed=cfg.seed, device=cfg.device,
        max_steps=cfg.max_steps, save_every=0, image_every=0,  # 0: a grid per epoch
        val_every=cfg.val_every,
        recipe="default", overwrite=True,  # its own recipe; a rerun trains afresh
        progress=cfg.progress,
    ))


def evaluate_model(cfg: DemoConfig, checkpoint: Path, shards: Path) -> Any:
    """Eval the checkpoint on the held-out split (an EvalResult)."""
    from depthkit.eval.evaluate import EvalConfig, evaluate

    return evaluate(EvalConfig(checkpoint=checkpoint, shards=shards, split="val",
                               batch_size=64, device=cfg.device, grid_samples=cfg.grid_samples))


def write_results(cfg: DemoConfig, result: Any, checkpoint: Path, timings: dict[str, float],
                  say: Callable[[str], None]) -> DemoResult:
    """metrics.json (with the demo's config and timings) and grid.png; says the metrics table."""
    from depthkit.eval.evaluate import format_table, write_grid, write_json

    out = Path(cfg.out)
    result.info["demo"] = {"config": _plain(asdict(cfg)), "timings": timings}
    metrics_path, grid_path = out / "metrics.json", out / "grid.png"
    write_json(result, metrics_path)
    write_grid(result, grid_path)
    say(format_table(result))
    return DemoResult(metrics_path, grid_path, checkpoint, result.as_json(), timings)


def format_demo_summary(result: DemoResult) -> str:
    """The closing lines of `depthkit demo`: timings, headline metrics, where the outputs are."""
    t, m = result.timings, result.metrics
    return "\n".join([
        f"done in {t['total_s']:.0f} s (synth {t['synth_s']:.0f}, shard {t['shard_s']:.0f}"
        f", train {t['train_s']:.0f}, eval {t['eval_s']:.0f}; CPU {t['cpu_s']:.0f} s, "
        f"load average {t['load_avg_1min']})",
        f"held-out mask IoU {m['mask_iou']:.3f}, depth RMSE {m['depth_rmse']:.3f}",
        f"metrics: {result.metrics_path}",
        f"grid:    {result.grid_path}",
        f"model:   {result.checkpoint}  (try: depthkit predict -c {result.checkpoint} "
        f"--bg BG --fgbg FGBG -o OUT)",
    ])


def _plain(value: Any) -> Any:
    """Paths and tuples -> JSON-friendly strings and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value
