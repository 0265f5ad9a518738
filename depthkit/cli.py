"""The `depthkit` command line: parses options and calls library code, nothing else.

Commands whose options fill a config dataclass (synth, shard, train, demo) take them from its
fields (depthkit.cli_options): defaults come from the config, help and CLI spelling from the
field's metadata or, for configs that carry none (synth, shard), from the *_CLI tables below.
User mistakes (DepthkitError) are printed as one line without a traceback, exit code 2.
"""

from __future__ import annotations

import logging
import operator
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated

import typer

from depthkit.cli_options import (
    DEFAULT,
    Opt,
    command,
    config_from,
    config_opts,
)
from depthkit.core.diskspace import disk_full_from
from depthkit.core.errors import DepthkitError
from depthkit.core.version import __version__
from depthkit.core.workers import Terminated, stop_on_signals
from depthkit.demo import DemoConfig
from depthkit.eval.config import EvalConfig, PredictConfig
from depthkit.shard import ShardConfig, parse_int_list
from depthkit.shard.plan import SPLIT_METHODS
from depthkit.synth import SynthConfig
from depthkit.synth.dataset import ARCHIVES
from depthkit.train.config import TrainConfig

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train mask + depth models on large composite image sets, fast.",
)

QUIET = Opt("quiet", bool, False, "No progress bar.")
FLAG_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0"}


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"depthkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          metavar="", help="Print the version and exit.")] = False,
) -> None:
    """Train mask + depth models on large composite image sets, fast."""


def not_flag_values(paths: list[Path]) -> None:
    """A positional 'true'/'false' after a flag (`--quiet true`): say flags take no value."""
    for path in paths:
        if str(path).lower() in FLAG_WORDS and not path.exists():
            raise DepthkitError(f"'{path}' is not a path: flags such as --quiet take no "
                                f"value (write --quiet or --no-quiet, not --quiet {path})")


def positional_or_option(positional: Path | None, option: Path | None, flags: str,
                         default: Path | None = None) -> Path:
    """The path given as `flags` or (deprecated in --help, kept for one release; the docs
    still show it) positionally."""
    if positional is not None:
        not_flag_values([positional])
        if option is not None and option != positional:
            raise DepthkitError(f"two paths given: {positional} and {flags} {option}")
    path = option or positional or default
    if path is None:
        raise DepthkitError(f"missing {flags} PATH")
    return path


def log_rank0(log_info: bool = True) -> None:
    """Info lines from rank 0 where `log_info` (train, demo); every other torchrun rank logs
    warnings only (their progress bars are off: the trainer draws them on rank 0 alone)."""
    other_rank = os.environ.get("RANK", "0") not in ("", "0")
    if log_info or other_rank:
        logging.basicConfig(format="%(message)s")
        logging.getLogger().setLevel(logging.WARNING if other_rank else logging.INFO)


SYNTH_CLI = {
    "bgs": {"help": "Backgrounds (rooms)."},
    "fgs": {"help": "Foreground cut-outs (10 per GGG group)."},
    "positions": {"help": "Positions per fg and flip (1..20)."},
    "fgs_per_bg": {"help": "Compose each room with only K of the fgs (the next K per room): "
                           "many rooms, few samples each (default: every fg in every room)."},
    "res": {"help": "Image side in pixels."},
    "seed": {"help": "Seed; same seed and counts, same bytes."},
    "archive": {"help": "Write '7z' (the original bg/fgbg/fgbgmask/Densedepth .7z set) or "
                        "'zip' (dataset.zip) instead of folders.", "choices": ARCHIVES},
    "lossless": {"help": "PNG masks and depth (exact) instead of JPEG.",
                 "flags": ("--lossless", "--png")},
}

SHARD_CLI = {
    "out": {"help": "Output folder.", "flags": ("--out", "-o")},
    "resolutions": {"help": "Resolution(s) in px, multiples of 16, e.g. 64,128,224 "
                            "(default: the source's own size).", "cli_name": "res",
                    "cli_type": str | None, "parse": lambda text: parse_int_list(text, "--res")},
    "split.method": {"help": "random, or by-bg (hold out whole backgrounds).",
                     "cli_name": "split", "choices": SPLIT_METHODS},
    "split.val_fraction": {"help": "Share of samples (or bgs) for val."},
    "split.seed": {"help": "Seed of the split and the global shuffle."},
    "shard_size": {"help": "Samples per shard (about)."},
    "bgs": {"help": "Only these background ids, e.g. 1,2,5.", "cli_type": str | None,
            "parse": lambda text: parse_int_list(text, "--bgs")},
    "limit": {"help": "Only the first N samples (key order)."},
    "strict": {"help": "Stop at the first bad sample."},
    "workers": {"help": "Decode-check processes (0: inline).", "cli_type": int | None,
                "flags": ("--workers", "-j"),
                "cli_default": None, "parse": lambda n: DEFAULT if n is None else n},
    "progress": {"help": "No progress bar.", "cli_name": "quiet", "parse": operator.not_,
                 "to_cli": operator.not_},
}


@command(app, "synth", [
    Opt("out_arg", Path | None, None, "Deprecated: use -o/--out.", argument=True),
    Opt("out", Path | None, None, "Output folder (created; a rerun resumes).", ("--out", "-o")),
    *config_opts(SynthConfig, SYNTH_CLI),
    Opt("workers", int | None, None, "Processes (default: all cores).", ("--workers", "-j")),
    QUIET,
])
def synth(args: SimpleNamespace) -> None:
    """Make a synthetic dataset in the original layout, with exact masks and depth."""
    from depthkit.synth import synthesize

    out = positional_or_option(args.out_arg, args.out, "-o")
    cfg = config_from(SynthConfig, vars(args), SYNTH_CLI)
    workers = (os.cpu_count() or 1) if args.workers is None else args.workers
    r = synthesize(out, cfg, workers=workers, progress=not args.quiet)
    rate = r.samples / r.seconds if r.seconds > 0 else 0.0
    typer.echo(f"synth: {r.samples} samples ({r.skipped} already there), {r.backgrounds} "
               f"backgrounds, {cfg.res} px, {r.seconds:.1f} s ({rate:.0f} samples/s) -> "
               + ", ".join(str(p) for p in r.outputs), err=True)


@command(app, "shard", [
    Opt("src", list[Path], help="Dataset: folder, .zip, or .7z archive(s).", argument=True),
    *config_opts(ShardConfig, SHARD_CLI),
])
def shard(args: SimpleNamespace) -> None:
    """Repack a dataset into WebDataset tar shards + DALI indexes + manifest (restartable)."""
    from depthkit.shard import format_shard_summary, write_shards

    not_flag_values(args.src)
    cfg = config_from(ShardConfig, vars(args), SHARD_CLI)
    typer.echo(format_shard_summary(write_shards(args.src, cfg)))


@command(app, "verify", [
    Opt("shards_arg", Path | None, None, "Deprecated: use -s/--shards.", argument=True),
    Opt("shards", Path | None, None, "Shard folder (holding manifest.json; default: shards).",
        ("--shards", "-s")),
    Opt("workers", int | None, None, "Checking processes (0: inline).", ("--workers", "-j")),
    QUIET,
])
def verify(args: SimpleNamespace) -> None:
    """Check every shard against the manifest; exit 1 listing the problems, else one line OK."""
    from depthkit.shard import format_report, verify_shards

    shards = positional_or_option(args.shards_arg, args.shards, "-s", Path("shards"))
    n = (os.cpu_count() or 1) if args.workers is None else args.workers
    report = verify_shards(shards, workers=n, progress=not args.quiet)
    if not report.ok:
        for problem in report.problems:
            typer.echo(problem, err=True)
    typer.echo(format_report(report), err=not report.ok)
    if not report.ok:
        raise typer.Exit(1)


@command(app, "train", config_opts(TrainConfig))
def train(args: SimpleNamespace) -> None:
    """Train a two-head mask + depth model on shards (DDP: torchrun -m depthkit train ...)."""
    from depthkit.train import fit, format_train_summary
    from depthkit.train.interrupt import Interrupted, resume_command

    log_rank0()
    cfg = config_from(TrainConfig, vars(args))
    try:
        result = fit(cfg)
    except Interrupted as stop:  # Ctrl-C / SIGTERM: last.pt written at that step
        if stop.checkpoint is not None:  # rank 0
            typer.echo(f"{stop}; resume with: {resume_command(stop.checkpoint)}", err=True)
        raise typer.Exit(stop.exit_code) from None
    summary = format_train_summary(result, cfg)
    if summary:
        typer.echo(summary, err=True)


EVAL_OUTPUTS = [
    Opt("json_out", Path | None, None, "Write the metrics as JSON here.", ("--json",)),
    Opt("grid", Path | None, None, "Write a picture grid (PNG) of a few samples here."),
]


@command(app, "eval", [*config_opts(EvalConfig), *EVAL_OUTPUTS, QUIET])
def eval_cmd(args: SimpleNamespace) -> None:
    """Mask IoU/Dice/accuracy and depth RMSE/MAE/abs_rel/delta/SSIM of a checkpoint."""
    from depthkit.core.progress import progress_bar
    from depthkit.eval import format_table, prepare, run_eval, write_grid, write_json

    log_rank0(log_info=False)
    run = prepare(config_from(EvalConfig, vars(args)))
    with progress_bar(f"eval {args.split}", total=run.total, enabled=not args.quiet) as advance:
        result = run_eval(run, progress=advance)
    typer.echo(format_table(result))
    if args.json_out is not None:
        write_json(result, args.json_out)
        typer.echo(f"metrics: {args.json_out}")
    if args.grid is not None:
        write_grid(result, args.grid)
        typer.echo(f"grid:    {args.grid}")


@command(app, "predict", [*config_opts(PredictConfig), QUIET])
def predict_cmd(args: SimpleNamespace) -> None:
    """Predict mask and depth for (bg, fgbg) pairs of any size; writes PNGs to --out."""
    from depthkit.core.progress import progress_bar
    from depthkit.eval import prepare_predict, run_predict

    log_rank0(log_info=False)
    run = prepare_predict(config_from(PredictConfig, vars(args)))
    done = 0
    with progress_bar("predict", total=len(run.pairs), unit="pairs",
                      enabled=not args.quiet) as advance:
        for _ in run_predict(run):
            done += 1
            advance()
    typer.echo(f"predicted {done} pair(s): masks, depth (gray + colour) and side-by-side "
               f"pictures in {args.out}")


@command(app, "demo", config_opts(DemoConfig))
def demo_cmd(args: SimpleNamespace) -> None:
    """Synth -> shard -> train at 64 px on the CPU -> eval: metrics JSON + picture grid."""
    from depthkit.demo import format_demo_summary, run_demo

    log_rank0()
    result = run_demo(config_from(DemoConfig, vars(args)), say=typer.echo)
    typer.echo(format_demo_summary(result))


def main() -> None:
    """Entry point of the `depthkit` console script."""
    stop_on_signals()  # SIGTERM/SIGINT -> Terminated: pools shut down, temp files dropped
    try:
        app()
    except Terminated as stop:
        how = "terminated (SIGTERM)" if stop.signum == signal.SIGTERM else "interrupted (Ctrl-C)"
        typer.secho(f"error: {how}; rerun the same command to resume", err=True,
                    fg=typer.colors.RED)
        sys.exit(stop.exit_code)
    except DepthkitError as err:
        typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
    except Exception as err:
        full = disk_full_from(err)  # ENOSPC/EDQUOT that no writer turned into one line
        if full is None:
            raise
        typer.secho(f"error: {full}", err=True, fg=typer.colors.RED)
        sys.exit(2)
