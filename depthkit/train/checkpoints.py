"""A run's checkpoints: `CheckpointSaver` writes last.pt / best.pt, `resume_state` reads one back.

Resume semantics: a checkpoint taken at the resolution the run is at continues exactly where
it stopped (epoch, step, batch within the epoch, optimiser, LR schedule, scaler, RNG, and each
rank's loader position under "loader"); a checkpoint from another resolution (the original's
`--res 128 --resume ...`) seeds the weights of a new stage whose optimiser and LR schedule
start fresh. The file format is depthkit.model.checkpoint's.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from depthkit.core.dist import DistInfo
from depthkit.core.errors import DepthkitError
from depthkit.model.checkpoint import capture_rng, restore_rng, save_checkpoint, unwrap
from depthkit.train.config import TrainConfig, config_record
from depthkit.train.loop import TrainState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What a checkpoint records about the model, so `load_model` can rebuild it."""

    name: str
    kwargs: dict[str, Any]
    params: int


class CheckpointSaver:
    """Writes <out>/<name> with the weights, training state and meta; rank 0 only, atomic."""

    def __init__(self, cfg: TrainConfig, model: ModelSpec, enabled: bool) -> None:
        self.out, self.model, self.enabled = Path(cfg.out), model, enabled
        self.config = config_record(cfg)

    def save(self, name: str, state: TrainState, res: int, norm: dict[str, Any],
             val: dict[str, float] | None = None,
             loader: dict[str, Any] | None = None) -> Path | None:
        """Write <out>/<name> for training at `res` px with `norm` and the ranks' `loader`
        states (`loader_record`); None on other ranks."""
        if not self.enabled:
            return None
        meta = {
            "model_name": self.model.name, "model_kwargs": self.model.kwargs, "res": res,
            "norm": norm, "epoch": state.epoch, "step": state.step,
            "batch_in_epoch": state.batch_in_epoch, "best": state.best,
            "config": self.config, "val": val or {}, "params": self.model.params,
        }
        path = self.out / name
        save_checkpoint(path, {
            "model": unwrap(state.model).state_dict(), "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(), "scaler": state.scaler.state_dict(),
            "meta": meta, "rng": capture_rng(), "loader": loader or {},
        })
        return path


def loader_record(res: int, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """What last.pt keeps of the training loaders: each rank's `state_dict()`, in rank order."""
    return {"res": int(res), "ranks": list(ranks)}


def loader_resume_state(saved: dict[str, Any] | None, res: int, dist: DistInfo, epoch: int,
                        batch: int) -> tuple[dict[str, Any] | None, str | None]:
    """(the state this rank's loader at `res` px takes at a resume, a line to log or None).

    The rank's own saved state when the resolution and the world size match; otherwise,
    mid-epoch, the plain position `{"epoch", "batch"}` (the loader then decodes and drops the
    trained batches; with another world size they are this rank's new share, not the same
    samples); at an epoch boundary without a usable state, None (`set_epoch` is exact there).
    """
    ranks = (saved or {}).get("ranks") or []
    if saved and int(saved.get("res", -1)) == res and len(ranks) == dist.world_size:
        return dict(ranks[dist.rank]), None
    if not batch:
        return None, None
    why = ("it holds no loader state" if not ranks else
           f"its loader state is of {len(ranks)} rank(s) at {saved.get('res')} px, this run has "
           f"{dist.world_size} at {res} px")
    return {"epoch": epoch, "batch": batch}, (
        f"resume: {why}; the loader skips the {batch} trained batches of epoch {epoch + 1} "
        "by decoding them")


CHECKPOINT_NAMES = ("last.pt", "best.pt")
EVENTS_GLOB = "events.out.tfevents.*"  # TensorBoard's event files (SummaryWriter)


def run_files(cfg: TrainConfig) -> list[Path]:
    """The files an earlier run wrote in cfg.out: its checkpoints and TensorBoard events."""
    out = Path(cfg.out)
    found = [out / n for n in CHECKPOINT_NAMES if (out / n).is_file()]
    tb = cfg.tb_dir
    return found + (sorted(p for p in tb.glob(EVENTS_GLOB) if p.is_file()) if tb.is_dir() else [])


def check_run_folder(cfg: TrainConfig) -> list[Path]:
    """Before any work: a run folder holding a run needs --resume (of that run) or --overwrite;
    returns the files --overwrite is to delete (one-line DepthkitError otherwise)."""
    out, files = Path(cfg.out), run_files(cfg)
    own = cfg.resume is not None and Path(cfg.resume).resolve().parent == out.resolve()
    if cfg.overwrite and own:
        raise DepthkitError(f"--overwrite would delete --resume {cfg.resume}: pass one of them")
    if cfg.overwrite or not files:
        return files
    if own:
        return []  # continuing this folder's own run
    last = out / "last.pt"
    held = (", ".join(p.name for p in files if p.suffix == ".pt")
            or f"TensorBoard events in {cfg.tb_dir}")
    cont = f"pass --resume {last} to continue it or " if last.is_file() else "pass "
    raise DepthkitError(f"{out} already holds a run ({held}); {cont}--overwrite to start again")


def clear_run(files: list[Path]) -> None:
    """Delete an earlier run's files (--overwrite): only the ones `run_files` named."""
    for path in files:
        path.unlink(missing_ok=True)
        log.info("--overwrite: deleted %s", path)


def nonfinite_part(state: TrainState) -> str | None:
    """'training loss' or 'weights' if this epoch's summed losses or the model's parameters and
    buffers hold a NaN/inf, else None: checked before every save (one host read of two flags),
    so no checkpoint ever holds the weights of a diverged run."""
    values = [v for v in unwrap(state.model).state_dict().values() if v.is_floating_point()]
    weights = torch.stack([torch.isfinite(v).all() for v in values]).all()
    sums = state.loss_sums
    loss = torch.isfinite(sums).all() if sums is not None else torch.ones_like(weights)
    loss_ok, weights_ok = torch.stack([loss.to(weights.device), weights]).tolist()
    if not loss_ok:
        return "training loss"
    return None if weights_ok else "weights"


def continues_run(cfg: TrainConfig, meta: dict[str, Any]) -> bool:
    """True if the checkpoint is this run mid-way, False if it seeds a new stage.

    Mid-way: the epoch it stopped in, or (at an epoch's end) the epoch it finished, belongs
    to a stage of this schedule at the checkpoint's resolution; a finished run, too."""
    epoch, res = int(meta["epoch"]), int(meta["res"])
    stage = cfg.stage_at(epoch)
    if stage is not None and stage.res == res:
        return True
    done = cfg.stage_at(epoch - 1) if epoch > 0 and not int(meta.get("batch_in_epoch", 0)) \
        else None
    if done is not None and done.res == res:
        return True  # an epoch's end: the next stage of the same schedule, or the end of it
    # at the first stage's resolution with nothing left to train: the run is finished
    return res == cfg.stages[0].res and epoch >= cfg.total_epochs


def resume_state(state: TrainState, ck: dict[str, Any], cfg: TrainConfig) -> None:
    """Continue the checkpointed run, or start a new stage from its weights (see module)."""
    meta = ck["meta"]
    if not continues_run(cfg, meta):
        state.step = int(meta["step"])  # TensorBoard curves continue; epochs count afresh
        log.info("new stage: weights from %s (%s px, epoch %s); optimiser and LR schedule "
                 "start fresh at %d px", cfg.resume, meta["res"], meta["epoch"],
                 cfg.stages[0].res)
        return
    planned = _schedule_plan(state.scheduler)
    try:
        state.optimizer.load_state_dict(ck["optimizer"])
        state.scheduler.load_state_dict(ck["scheduler"])
        if ck.get("scaler"):
            state.scaler.load_state_dict(ck["scaler"])
    except (KeyError, ValueError, RuntimeError) as err:
        raise DepthkitError(
            f"--resume {cfg.resume}: optimiser/scheduler state does not fit this "
            f"run (--optimizer {cfg.optimizer}?): {str(err).splitlines()[0]}"
        ) from None
    _keep_plan(state.scheduler, planned)
    state.epoch, state.step = int(meta["epoch"]), int(meta["step"])
    state.batch_in_epoch = int(meta.get("batch_in_epoch", 0))
    state.best = float(meta.get("best", math.inf))
    if "rng" in ck:
        restore_rng(ck["rng"])
    log.info("resumed %s at epoch %d, step %d (+%d batches)",
             cfg.resume, state.epoch, state.step, state.batch_in_epoch)


def _schedule_plan(scheduler: Any) -> list[dict[str, Any]] | None:
    """The LR factor objects' settings of this run's plan (a one-cycle's total steps)."""
    lambdas = getattr(scheduler, "lr_lambdas", None)
    return None if lambdas is None else [dict(vars(f)) for f in lambdas]


def _keep_plan(scheduler: Any, planned: list[dict[str, Any]] | None) -> None:
    """A resumed schedule follows this run's plan: the checkpoint's LR factor objects carry
    the old one, so `--epochs 20` after 10 would train the new epochs at the LR floor."""
    if planned is None:
        return
    for f, plan in zip(scheduler.lr_lambdas, planned, strict=True):
        old = dict(vars(f))
        if old != plan:
            vars(f).update(plan)
            log.info("resume: the LR schedule follows this run's plan (%s; the checkpoint's "
                     "was %s)", _plan_text(plan), _plan_text(old))


def _plan_text(plan: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in plan.items())
