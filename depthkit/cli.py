"""The `depthkit` command line: parses options and calls library code, nothing else.

User mistakes (DepthkitError) are printed as one line without a traceback, exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path  # noqa: F401  (used by the command blocks below)
from typing import Annotated  # noqa: F401

import typer

from depthkit.core.errors import DepthkitError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train mask + depth models on large composite image sets, fast.",
)

# Each block below belongs to one command; edit only inside your block.

# --- synth ---
@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Output folder (created; a rerun resumes).")],
    bgs: Annotated[int, typer.Option(help="Backgrounds (rooms).")] = 4,
    fgs: Annotated[int, typer.Option(help="Foreground cut-outs (10 per GGG group).")] = 10,
    positions: Annotated[int, typer.Option(help="Positions per fg and flip (1..20).")] = 2,
    res: Annotated[int, typer.Option(help="Image side in pixels.")] = 224,
    seed: Annotated[int, typer.Option(help="Seed; same seed and counts, same bytes.")] = 0,
    archive: Annotated[
        str | None, typer.Option(help="Write '7z' (the original bg/fgbg/fgbgmask/Densedepth "
                                      ".7z set) or 'zip' (dataset.zip) instead of folders.")
    ] = None,
    lossless: Annotated[bool, typer.Option(
        "--lossless", "--png", help="PNG masks and depth (exact) instead of JPEG.")] = False,
    workers: Annotated[int | None, typer.Option(help="Processes (default: all cores).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Make a synthetic dataset in the original layout, with exact masks and depth."""
    import os

    from depthkit.synth.dataset import SynthConfig, synthesize

    cfg = SynthConfig(bgs=bgs, fgs=fgs, positions=positions, res=res, seed=seed,
                      archive=archive, lossless=lossless)
    n = (os.cpu_count() or 1) if workers is None else workers
    r = synthesize(out, cfg, workers=n, progress=not quiet)
    rate = r.samples / r.seconds if r.seconds > 0 else 0.0
    typer.echo(f"synth: {r.samples} samples ({r.skipped} already there), {r.backgrounds} "
               f"backgrounds, {res} px, {r.seconds:.1f} s ({rate:.0f} samples/s) -> "
               + ", ".join(str(p) for p in r.outputs), err=True)
# --- end synth ---

# --- shard ---
@app.command()
def shard(
    src: Annotated[list[Path], typer.Argument(help="Dataset: folder, .zip, or .7z archive(s).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("shards"),
    res: Annotated[str, typer.Option(help="Resolution(s) in px, e.g. 64,128,224.")] = "224",
    split: Annotated[str, typer.Option(help="random, or by-bg (hold out whole backgrounds).")]
    = "random",
    val_fraction: Annotated[float, typer.Option(help="Share of samples (or bgs) for val.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the split and the global shuffle.")] = 0,
    shard_size: Annotated[int, typer.Option(help="Samples per shard (about).")] = 2000,
    bgs: Annotated[str | None, typer.Option(help="Only these background ids, e.g. 1,2,5.")]
    = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N samples (key order).")]
    = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad sample.")] = False,
    workers: Annotated[int | None, typer.Option(help="Decode-check processes (0: inline).")]
    = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Repack a dataset into WebDataset tar shards + DALI indexes + manifest (restartable)."""
    from depthkit.shard.plan import SplitConfig
    from depthkit.shard.run import ShardConfig, format_summary, parse_int_list, write_shards

    cfg = ShardConfig(
        out=out,
        resolutions=parse_int_list(res, "--res") or (),
        split=SplitConfig(split, val_fraction, seed),
        shard_size=shard_size,
        bgs=parse_int_list(bgs, "--bgs"),
        limit=limit,
        strict=strict,
        progress=not quiet,
        **({"workers": workers} if workers is not None else {}),
    )
    typer.echo(format_summary(write_shards(src, cfg)))
# --- end shard ---

# --- verify ---
@app.command()
def verify(
    shards: Annotated[Path, typer.Argument(help="Shard folder (holding manifest.json).")] = Path(
        "shards"
    ),
    workers: Annotated[int | None, typer.Option(help="Checking processes (0: inline).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Check every shard against the manifest; exit 1 listing the problems, else one line OK."""
    import os

    from depthkit.shard.verify import format_report, verify_shards

    n = (os.cpu_count() or 1) if workers is None else workers
    report = verify_shards(shards, workers=n, progress=not quiet)
    if not report.ok:
        for problem in report.problems:
            typer.echo(problem, err=True)
    typer.echo(format_report(report), err=not report.ok)
    if not report.ok:
        raise typer.Exit(1)
# --- end verify ---

# --- train ---
@app.command()
def train(
    shards: Annotated[Path, typer.Option(help="Shard folder (from `depthkit shard`).")]
    = Path("shards"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: last.pt, best.pt, tb/.")]
    = Path("runs/depthkit"),
    res: Annotated[int, typer.Option(help="Resolution (px); reads that shard copy.")] = 224,
    epochs: Annotated[int, typer.Option(help="Epochs (total, counting resumed ones).")] = 1,
    schedule: Annotated[str | None, typer.Option(
        help="Progressive resizing RES:EPOCHS,..., e.g. 64:5,128:3,224:1 (overrides --res).")]
    = None,
    model: Annotated[str, typer.Option(help="default, diffunet, unetexp, ... (see README).")]
    = "default",
    model_option: Annotated[list[str] | None, typer.Option(
        help="Model constructor option KEY=VALUE, repeatable, e.g. widths='(16,32,48,64)'.")]
    = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Per-rank batch (default: the original's 100/32/12 at 64/128/224 px).")] = None,
    optimizer: Annotated[str, typer.Option(
        help="sgd (original: momentum, L2, StepLR) or adamw (one-cycle).")] = "sgd",
    lr: Annotated[float | None, typer.Option(help="LR (default 0.047 sgd, 3e-3 adamw).")]
    = None,
    weight_decay: Annotated[float | None, typer.Option(
        help="Default 1e-3 (sgd) / 1e-2 (adamw).")] = None,
    step_size: Annotated[int, typer.Option(help="sgd: epochs between LR drops.")] = 2,
    gamma: Annotated[float, typer.Option(help="sgd: LR drop factor.")] = 0.1,
    mask_loss: Annotated[str, typer.Option(
        help="bce_dice, bce_lovasz (BCE + Lovasz hinge, an IoU surrogate) or mse (original).")]
    = "bce_dice",
    depth_loss: Annotated[str, typer.Option(help="l1_ssim_grad or mse (original).")]
    = "l1_ssim_grad",
    mask_weight: Annotated[float, typer.Option(help="Weight of the mask loss.")] = 1.0,
    depth_weight: Annotated[float, typer.Option(help="Weight of the depth loss.")] = 1.0,
    amp: Annotated[bool, typer.Option(
        help="Mixed precision: bf16/fp16 (+grad scaler) on CUDA, bf16 autocast on CPU.")]
    = False,
    amp_dtype: Annotated[str, typer.Option(help="auto, bf16 or fp16 (CUDA only).")] = "auto",
    channels_last: Annotated[bool | None, typer.Option(
        "--channels-last/--no-channels-last", help="Default: on for CUDA, off on CPU.")] = None,
    compile: Annotated[bool, typer.Option(help="torch.compile the model.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    augment: Annotated[bool, typer.Option(help="Training augmentations.")] = True,
    threads: Annotated[int, typer.Option(help="Loader threads per rank.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of weights and data order.")] = 0,
    save_every: Annotated[int, typer.Option(help="Steps between last.pt writes.")] = 500,
    log_every: Annotated[int, typer.Option(help="Steps between TensorBoard scalars.")] = 20,
    image_every: Annotated[int, typer.Option(help="Steps between image grids.")] = 500,
    val_every: Annotated[int, typer.Option(help="Epochs between validations (0: none).")] = 1,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N steps (resumable).")]
    = None,
    logdir: Annotated[Path | None, typer.Option(help="TensorBoard folder (default OUT/tb).")]
    = None,
    resume: Annotated[Path | None, typer.Option(help="Checkpoint to continue from.")] = None,
) -> None:
    """Train a two-head mask + depth model on shards (DDP: torchrun -m depthkit train ...)."""
    import logging

    from depthkit.model.networks import parse_model_options
    from depthkit.train.loop import Stage, TrainConfig, fit, format_summary, parse_schedule
    from depthkit.train.losses import LossConfig

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = TrainConfig(
        shards=shards, out=out,
        stages=parse_schedule(schedule) if schedule else (Stage(res, epochs),),
        model=model, model_options=parse_model_options(model_option or []),
        batch_size=batch_size, optimizer=optimizer, lr=lr,
        weight_decay=weight_decay, step_size=step_size, gamma=gamma,
        loss=LossConfig(mask=mask_loss, depth=depth_loss, mask_weight=mask_weight,
                        depth_weight=depth_weight),
        amp=amp, amp_dtype=amp_dtype, channels_last=channels_last, compile=compile,
        device=device, augment=augment, num_threads=threads, seed=seed, save_every=save_every,
        log_every=log_every, image_every=image_every, val_every=val_every, max_steps=max_steps,
        logdir=logdir, resume=resume,
    )
    summary = format_summary(fit(cfg), cfg)
    if summary:
        typer.echo(summary, err=True)
# --- end train ---

# --- eval ---
@app.command("eval")
def eval_cmd(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="Checkpoint (.pt).")],
    shards: Annotated[Path, typer.Option("--shards", "-s", help="Shard folder.")],
    split: Annotated[str, typer.Option(help="Split to evaluate: val or train.")] = "val",
    res: Annotated[
        int | None, typer.Option(help="Model resolution (default: the checkpoint's).")
    ] = None,
    shard_res: Annotated[
        int | None, typer.Option(help="Shard copy to read (default: --res if held, else largest).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the metrics as JSON here.")
    ] = None,
    grid: Annotated[
        Path | None, typer.Option(help="Write a picture grid (PNG) of a few samples here.")
    ] = None,
    grid_samples: Annotated[int, typer.Option(help="Rows of the picture grid.")] = 8,
    batch_size: Annotated[int, typer.Option(help="Samples per batch.")] = 32,
    limit: Annotated[int | None, typer.Option(help="Stop after N samples.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
) -> None:
    """Mask IoU/Dice/accuracy and depth RMSE/MAE/abs_rel/delta/SSIM of a checkpoint."""
    from depthkit.core.progress import progress_bar
    from depthkit.eval.evaluate import (
        EvalConfig,
        format_table,
        prepare,
        run_eval,
        write_grid,
        write_json,
    )

    run = prepare(EvalConfig(checkpoint=checkpoint, shards=shards, split=split, res=res,
                             shard_res=shard_res, batch_size=batch_size, device=device,
                             grid_samples=grid_samples, limit=limit))
    with progress_bar(f"eval {split}", total=run.total) as advance:
        result = run_eval(run, progress=advance)
    typer.echo(format_table(result))
    if json_out is not None:
        write_json(result, json_out)
        typer.echo(f"metrics: {json_out}")
    if grid is not None:
        write_grid(result, grid)
        typer.echo(f"grid:    {grid}")
# --- end eval ---

# --- predict ---
@app.command("predict")
def predict_cmd(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="Checkpoint (.pt).")],
    bg: Annotated[Path, typer.Option(help="Background image, or a folder of them.")],
    fgbg: Annotated[Path, typer.Option(help="Composite image, or a folder (names match --bg).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    res: Annotated[
        int | None, typer.Option(help="Model resolution (default: the checkpoint's).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
) -> None:
    """Predict mask and depth for (bg, fgbg) pairs of any size; writes PNGs to --out."""
    from depthkit.core.progress import progress_bar
    from depthkit.eval.predict import PredictConfig, prepare_predict, run_predict

    run = prepare_predict(PredictConfig(checkpoint=checkpoint, bg=bg, fgbg=fgbg, out=out,
                                        res=res, device=device))
    done = 0
    with progress_bar("predict", total=len(run.pairs), unit="pairs") as advance:
        for _ in run_predict(run):
            done += 1
            advance()
    typer.echo(f"predicted {done} pair(s): masks, depth (gray + colour) and side-by-side "
               f"pictures in {out}")
# --- end predict ---

# --- demo ---
@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for data, run and results.")]
    = Path("demo-out"),
    epochs: Annotated[int, typer.Option(help="Training epochs at 64 px.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of data, weights and order.")] = 0,
) -> None:
    """Synth -> shard -> train at 64 px on the CPU -> eval: metrics JSON + picture grid."""
    import logging

    from depthkit.demo import DemoConfig, run_demo

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run_demo(DemoConfig(out=out, epochs=epochs, seed=seed), say=typer.echo)
    t = result.timings
    typer.echo(f"done in {t['total_s']:.0f} s (synth {t['synth_s']:.0f}, shard {t['shard_s']:.0f}"
               f", train {t['train_s']:.0f}, eval {t['eval_s']:.0f}; CPU {t['cpu_s']:.0f} s, "
               f"load average {t['load_avg_1min']})")
    typer.echo(f"held-out mask IoU {result.metrics['mask_iou']:.3f}, depth RMSE "
               f"{result.metrics['depth_rmse']:.3f}")
    typer.echo(f"metrics: {result.metrics_path}")
    typer.echo(f"grid:    {result.grid_path}")
    typer.echo(f"model:   {result.checkpoint}  (try: depthkit predict -c {result.checkpoint} "
               f"--bg BG --fgbg FGBG -o OUT)")
# --- end demo ---


def main() -> None:
    """Entry point of the `depthkit` console script."""
    try:
        app()
    except DepthkitError as err:
        typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
