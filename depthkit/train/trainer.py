"""`fit(TrainConfig)`: runs the stages (res, epochs) of `train_one_epoch` and `validate`, with
AMP, checkpoints, TensorBoard and DDP (rank 0 alone logs and writes). `Trainer` owns one run.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import Tensor, nn

from depthkit.core.dist import (
    all_gather_objects,
    barrier,
    device_kind,
    dist_from_env,
    pick_device,
)
from depthkit.core.errors import DepthkitError
from depthkit.core.lock import RunLock
from depthkit.core.progress import progress_bar
from depthkit.loader.batches import BatchSource, LoaderFactory, LoaderRequest
from depthkit.model import (
    count_parameters,
    create_model,
    forward_flops,
    model_kwargs,
    resolve_name,
)
from depthkit.model.checkpoint import build_model_from, load_checkpoint, unwrap
from depthkit.train.board import Board, Throughput, image_grid
from depthkit.train.checkpoints import (
    CheckpointSaver,
    ModelSpec,
    check_run_folder,
    clear_run,
    continues_run,
    loader_record,
    loader_resume_state,
    nonfinite_part,
    resume_state,
)
from depthkit.train.config import Stage, TrainConfig, apply_recipe
from depthkit.train.data import shard_loader_factory, without_missing_val
from depthkit.train.distributed import agree_to_stop, broadcast_buffers, wrap_model
from depthkit.train.interrupt import Interrupted, StopSignals
from depthkit.train.loop import TrainState, train_one_epoch, validate
from depthkit.train.losses import build_criterion
from depthkit.train.optim import build_optimizer, build_scheduler
from depthkit.train.runtime import Runtime, distributed_runtime
from depthkit.train.summary import summary_line

log = logging.getLogger(__name__)


def build_model(cfg: TrainConfig, ck: dict[str, Any] | None) -> tuple[nn.Module, ModelSpec]:
    """The run's model: the resumed checkpoint's (if it is the model asked for), else a new one."""
    if ck is None:
        name = resolve_name(cfg.model)
        kwargs = model_kwargs(cfg.model, **cfg.model_options)
        model = create_model(name, **kwargs)
    else:
        name = ck["meta"]["model_name"]
        if cfg.model != "default" and resolve_name(cfg.model) != name:
            raise DepthkitError(
                f"--resume {cfg.resume} holds model '{name}', not --model {cfg.model}"
            )
        kwargs = dict(ck["meta"]["model_kwargs"])
        check_model_options(cfg, name, kwargs)
        model = build_model_from(ck, cfg.resume)
    return model, ModelSpec(name, kwargs, count_parameters(model))


def check_model_options(cfg: TrainConfig, name: str, stored: dict[str, Any]) -> None:
    """--model-option with --resume must agree with the checkpoint's model (it is not rebuilt)."""
    asked = model_kwargs(name, **cfg.model_options)
    for key in cfg.model_options:
        if asked[key] != stored.get(key):
            raise DepthkitError(
                f"--model-option {key}={cfg.model_options[key]!r}: --resume {cfg.resume} holds "
                f"a model with {key}={stored.get(key)!r}; drop the option or start a new run")


def finished_message(cfg: TrainConfig, ck: dict[str, Any] | None) -> str | None:
    """What to say when the resumed checkpoint already finished this schedule (else None)."""
    if ck is None or not continues_run(cfg, ck["meta"]):
        return None
    if int(ck["meta"]["epoch"]) < cfg.total_epochs:
        return None
    return (f"nothing to do: {cfg.resume} already finished its schedule ({cfg.total_epochs} "
            "epochs); raise --epochs or change --schedule to train more")


class Trainer:
    """Owns one run: the state, the loaders per stage, logging and checkpoints."""

    def __init__(self, cfg: TrainConfig, rt: Runtime, make_loader: LoaderFactory) -> None:
        self.cfg, self.rt, self.make_loader = cfg, rt, make_loader
        self.master = rt.dist.is_master
        self.criterion = build_criterion(cfg.loss)
        self.val_loaders: dict[int, BatchSource] = {}
        self.board = Board(cfg, enabled=self.master)
        self.speed = Throughput()  # samples/s between scalar logs
        self.history: list[dict[str, Any]] = []
        self.res = cfg.stages[0].res  # of the stage being trained (recorded in checkpoints)
        self.norm: dict[str, Any] = {}  # the loader's normalisation (idem)
        self.stop = StopSignals(announce=self.master)  # SIGINT/SIGTERM while fit() runs

        ck = load_checkpoint(cfg.resume) if cfg.resume else None
        model, self.model_spec = build_model(cfg, ck)
        self.finished = finished_message(cfg, ck)
        # forward GFLOPs per stage: only rank 0 reports them
        self.flops = {s.res: forward_flops(model, s.res) for s in cfg.stages} if (
            self.master) else {}
        self.saver = CheckpointSaver(cfg, self.model_spec, enabled=self.master)
        model = model.to(rt.device)
        if rt.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.train_loaders = {s.res: self._loader("train", s.res, train=True)
                              for s in cfg.stages}
        for res, loader in self.train_loaders.items():  # shard runs were checked before
            if len(loader) == 0 and not self.finished:
                raise DepthkitError(f"--batch-size {cfg.batch_for(res)}: more than the training "
                                    f"samples per rank at {res} px (0 steps); pass a smaller one")
        self.state = self._new_state(model)
        # (path, step) of the newest checkpoint known good: named when a run diverges
        self.last_saved: tuple[Path, int] | None = None
        # the loaders' saved positions, given to the first epoch's loader (None: no resume)
        self.resumed_loader: dict[str, Any] | None = None
        if ck is not None:
            resume_state(self.state, ck, cfg)
            self.last_saved = (Path(cfg.resume), int(ck["meta"]["step"]))
            if continues_run(cfg, ck["meta"]):
                self.resumed_loader = dict(ck.get("loader") or {})

    # -- setup ---------------------------------------------------------------------------------

    def _loader(self, split: str, res: int, train: bool) -> BatchSource:
        cfg = self.cfg
        return self.make_loader(LoaderRequest(
            split=split, res=res, batch_size=cfg.batch_for(res), train=train, dist=self.rt.dist,
            device=str(self.rt.device), seed=cfg.seed,
            num_threads=cfg.loader_threads(self.rt.dist.local_world_size),
            channels_last=self.rt.channels_last, prefetch=cfg.prefetch,
        ))

    def _new_state(self, model: nn.Module) -> TrainState:
        """Optimiser, LR schedule (planned over every stage's steps) and grad scaler."""
        cfg, rt = self.cfg, self.rt
        total_steps = sum(s.epochs * len(self.train_loaders[s.res]) for s in cfg.stages)
        opt = build_optimizer(cfg, model, fused=rt.fused_optimizer)
        sched, per_step = build_scheduler(cfg, opt, total_steps)
        scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
        trained, self.eval_model = wrap_model(model, cfg, rt)
        return TrainState(trained, opt, sched, scaler, per_step_scheduler=per_step)

    def save(self, name: str, val: dict[str, float] | None = None) -> Path | None:
        """Write <out>/<name> (rank 0 only; every rank calls it: their loader states are
        gathered); a DepthkitError instead if the loss or the weights are not finite (checked
        on every rank: their weights are the same under DDP)."""
        bad = nonfinite_part(self.state)
        if bad is not None:
            raise self._diverged(f"non-finite {bad}", f"{name} not written")
        states = all_gather_objects(self.train_loaders[self.res].state_dict())
        path = self.saver.save(name, self.state, self.res, self.norm, val,
                               loader_record(self.res, states))
        if name == "last.pt":
            self.last_saved = (Path(self.cfg.out) / name, self.state.step)
        return path

    def _diverged(self, what: str, done: str) -> DepthkitError:
        """The one-line error of a run whose loss or weights became NaN/inf."""
        s = self.state
        hint = " or --amp-dtype bf16" if self.rt.amp_dtype == torch.float16 else ""
        good = "no checkpoint written yet" if self.last_saved is None else (
            f"last good checkpoint: {self.last_saved[0]} (step {self.last_saved[1]})")
        return DepthkitError(f"{what} at epoch {self._epoch_of_step()} step {s.step}; {done}; "
                             f"{good}; try a lower --lr{hint}")

    def _epoch_of_step(self) -> int:
        """The epoch (1-based) that the last step taken belongs to."""
        s = self.state
        return s.epoch + 1 if s.batch_in_epoch else max(s.epoch, 1)

    # -- the run -------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Run every remaining epoch of every stage; returns the history and final metrics."""
        cfg, s = self.cfg, self.state
        if self.finished:  # a resumed run with nothing left: no new event file, no save
            return {"history": [], "epochs": s.epoch, "steps": s.step, "master": self.master,
                    "model": unwrap(s.model), "seconds": 0.0, "best_val_loss": s.best,
                    "params": self.model_spec.params, "flops": self.flops,
                    "nothing_to_do": self.finished}
        self.board.open()
        start = time.perf_counter()
        try:
            with self.stop:  # from here on SIGINT/SIGTERM stop at a step boundary
                if self.master:
                    flops = ", ".join(f"{r} px {f / 1e9:.2f}" for r, f in self.flops.items())
                    log.info("model %s: %s parameters; forward GFLOPs/sample: %s",
                             self.model_spec.name, f"{self.model_spec.params:,}", flops)
                while s.epoch < cfg.total_epochs and not self._out_of_steps():
                    self._stop_if_asked()  # a signal during validation or the last save
                    self._run_epoch()
        finally:
            self.board.close()
        return {"history": self.history, "epochs": s.epoch, "steps": s.step,
                "master": self.master, "model": unwrap(s.model),
                "seconds": time.perf_counter() - start, "best_val_loss": s.best,
                "params": self.model_spec.params, "flops": self.flops}

    def _stop_if_asked(self) -> None:
        """At a step boundary: if a stop signal came (on any rank), save and raise Interrupted.

        Under DDP the ranks first agree (train.distributed): on the signal, and on whether
        every rank's loss so far is finite (else all raise the divergence error together)."""
        signum = self.stop.signum or 0
        if self.rt.dist.distributed:
            signum, bad = agree_to_stop(signum, self.state.loss_sums, self.rt.device)
            if bad:
                raise self._diverged("non-finite training loss", "not saved")
        if signum:
            self._interrupt(int(signum))

    def _interrupt(self, signum: int) -> NoReturn:
        """Write last.pt at this step (unless just written), wait for every rank, raise."""
        s = self.state
        if self.last_saved != (Path(self.cfg.out) / "last.pt", s.step):
            self.save("last.pt")  # mid-epoch: it records the batch within the epoch
        barrier()  # no rank exits (and makes torchrun kill the rest) before rank 0 has saved
        where = Path(self.cfg.out) / "last.pt" if self.master else None
        raise Interrupted(signum, self._epoch_of_step(), s.step, where)

    def _out_of_steps(self) -> bool:
        return self.cfg.max_steps is not None and self.state.step >= self.cfg.max_steps

    def _run_epoch(self) -> None:
        """One epoch of the current stage; a run stopped mid-epoch saves where it is."""
        stage = self.cfg.stage_at(self.state.epoch)
        assert stage is not None
        loader = self._enter(stage)
        means, seconds = self._train(stage, loader)
        if not math.isfinite(means["loss"]):  # the epoch's mean: already on the host
            raise self._diverged(f"non-finite training loss ({means['loss']})", "not saved")
        if self._out_of_steps() and self.state.batch_in_epoch < len(loader):
            self.save("last.pt")  # stopped mid-epoch: resumable from this batch
            self.history.append({"epoch": self.state.epoch, "res": stage.res, "partial": True,
                                 **means})
            return
        self.state.finish_epoch()
        self._close_epoch(stage, means, seconds)

    def _enter(self, stage: Stage) -> BatchSource:
        """The stage's training loader, set to this epoch (and, on the first epoch of a
        resumed run, to where its rank stopped); checkpoints now record its res."""
        self.res = stage.res
        loader = self.train_loaders[stage.res]
        self.norm = dict(getattr(loader, "norm", {}) or {})
        loader.set_epoch(self.state.epoch)
        if self.resumed_loader is not None:
            s = self.state
            state, why = loader_resume_state(self.resumed_loader, stage.res, self.rt.dist,
                                             s.epoch, s.batch_in_epoch)
            self.resumed_loader = None
            if why and self.master:
                log.info("%s", why)
            if state is not None:
                loader.load_state_dict(state)
        return loader

    def _global_batch(self, stage: Stage) -> int:
        return self.cfg.batch_for(stage.res) * self.rt.dist.world_size

    def _train(self, stage: Stage, loader: BatchSource) -> tuple[dict[str, float], float]:
        """The rest of this epoch (a resumed one's loader skips its trained batches) under a
        progress bar counting samples of all ranks; returns the mean losses and the seconds."""
        cfg, s = self.cfg, self.state
        skip = s.batch_in_epoch
        bsz = self._global_batch(stage)
        label = f"epoch {s.epoch + 1}/{cfg.total_epochs} @ {stage.res}px"
        self.speed.reset()
        t0 = time.perf_counter()
        with progress_bar(label, total=len(loader) * bsz, unit="samples",
                          enabled=self.master and cfg.progress, start=skip * bsz) as advance:
            advance(skip * bsz)  # trained before a resume: shown, kept out of the rate
            on_step = functools.partial(self._on_step, advance=advance, last=len(loader))
            # stopped after the epoch's last batch: the loader stands at the next epoch
            batches = loader if skip < len(loader) else ()
            means = train_one_epoch(s, batches, self.criterion, self.rt, start=skip,
                                    max_steps=cfg.max_steps, on_step=on_step)
        return means, time.perf_counter() - t0

    def _on_step(self, state: TrainState, batch: dict[str, Tensor], out: dict[str, Tensor],
                 loss: Tensor, parts: dict[str, Tensor], advance: Callable[..., None],
                 last: int) -> None:
        """After each optimiser step: progress, scalars, image grid (also at the epoch's `last`
        batch) and last.pt, each at its interval; then a stop signal, if one came, saves and
        raises Interrupted. Only the steps that log or save read the device."""
        cfg = self.cfg
        logs = bool(cfg.log_every) and state.step % cfg.log_every == 0
        if self.rt.dist.distributed and self._ranks_meet(state, logs, last):
            self._stop_if_asked()  # first all ranks agree (stop? loss finite?), then act
        bsz = batch["bg"].shape[0] * self.rt.dist.world_size
        self.speed.add(bsz)
        fields = self._log_step(state, loss, parts) if logs else {}
        advance(bsz, **fields)
        if (cfg.image_every and state.step % cfg.image_every == 0) or (
                state.batch_in_epoch == last):
            self.board.image("train/samples", lambda: image_grid(batch, out, self.norm),
                             state.step)
        if cfg.save_every and state.step % cfg.save_every == 0:
            self.save("last.pt")
        if self.stop.signum is not None and not self.rt.dist.distributed:
            self._interrupt(self.stop.signum)

    def _ranks_meet(self, state: TrainState, logs: bool, last: int) -> bool:
        """Whether the ranks agree on stopping after this step: where the device is read
        anyway (a log step, a save, the epoch's last or the run's last step), or every step
        when nothing is logged (--log-every 0)."""
        cfg = self.cfg
        saves = bool(cfg.save_every) and state.step % cfg.save_every == 0
        return (logs or saves or not cfg.log_every or state.batch_in_epoch == last
                or self._out_of_steps())

    def _log_step(self, state: TrainState, loss: Tensor,
                  parts: dict[str, Tensor]) -> dict[str, str]:
        """Step scalars to TensorBoard; returns the loss and LR for the progress bar."""
        # .tolist() is a CPU-GPU sync point: only every log_every steps. It also reads the
        # epoch's summed loss, so a NaN/inf loss since the epoch began is caught here.
        epoch_sums = state.loss_sums if state.loss_sums is not None else loss.reshape(1)
        value, mask, depth, total = torch.stack(
            [loss, parts["mask"], parts["depth"], epoch_sums[0]]).tolist()
        if not math.isfinite(total):
            raise self._diverged(f"non-finite training loss ({total})", "not saved")
        rate = self.speed.rate()
        lr = state.optimizer.param_groups[0]["lr"]
        if self.board.active:
            self.board.scalars("train", {
                "loss": value, "loss_mask": mask, "loss_depth": depth, "lr": lr,
                "samples_per_s": rate}, state.step)
        return {"loss": f"{value:.4f}", "lr": f"{lr:.2e}"}

    def _close_epoch(self, stage: Stage, means: dict[str, float], seconds: float) -> None:
        """Validate (every val_every epochs), log, save last.pt and record the epoch."""
        cfg, s = self.cfg, self.state
        # no train_* means for an epoch whose batches were all trained before a resume
        trained = {f"train_{k}": v for k, v in means.items()} if means["batches"] else {}
        record: dict[str, Any] = {
            "epoch": s.epoch, "res": stage.res, "seconds": seconds,
            "samples_per_s": means["batches"] * self._global_batch(stage) / max(seconds, 1e-9),
            **trained}
        val = None
        if cfg.val_every and s.epoch % cfg.val_every == 0:
            val = self._validate(stage)
            record.update({f"val_{k}": v for k, v in val.items()})
        self.board.scalars("train", {"epoch_samples_per_s": record["samples_per_s"]}, s.step)
        self.save("last.pt", val)
        self.history.append(record)
        if self.master:
            log.info("epoch %d/%d @ %d px: %s", s.epoch, cfg.total_epochs, stage.res,
                     summary_line(record))

    def _validate(self, stage: Stage) -> dict[str, float]:
        """Validation at the stage's resolution; a new best loss also writes best.pt."""
        if stage.res not in self.val_loaders:
            self.val_loaders[stage.res] = self._loader("val", stage.res, train=False)
        broadcast_buffers(self.eval_model)  # rank 0's BatchNorm statistics on every rank
        val = validate(self.eval_model, self.val_loaders[stage.res], self.criterion, self.rt)
        self.board.scalars("val", val, self.state.step)
        if val["loss"] < self.state.best and self.state.step > 0:  # never an untrained model
            self.state.best = val["loss"]
            self.save("best.pt", val)
        return val


def fit(cfg: TrainConfig, make_loader: LoaderFactory | None = None) -> dict[str, Any]:
    """Train as `cfg` says (single process or one torchrun rank); returns a summary dict.

    `make_loader` defaults to the DALI shard pipeline; tests pass in-memory loaders
    (depthkit.loader.memory.tensor_loader_factory).
    """
    if not cfg.stages:
        raise DepthkitError("no training stages (give --res/--epochs or --schedule)")
    pick_device(cfg.device, dist_from_env())  # no GPU for --device cuda: said before any work
    # --device auto resolved (its defaults follow the device) and unset options from --recipe,
    # so checkpoints record what ran
    cfg = apply_recipe(replace(cfg, device=device_kind(cfg.device)))
    if make_loader is None:
        cfg = without_missing_val(cfg)  # (and a missing shard folder is named first)
    # one run per run folder (a live run is named before any other check); rank 0 alone
    # writes there, so it alone takes the lock
    lock = RunLock(Path(cfg.out), "train") if dist_from_env().is_master else nullcontext()
    with lock:
        stale = check_run_folder(cfg)  # before any work
        factory = make_loader or shard_loader_factory(cfg)  # checks shards and batch sizes
        return _fit_locked(cfg, factory, stale)


def _fit_locked(cfg: TrainConfig, factory: LoaderFactory, stale: list[Path]) -> dict[str, Any]:
    """The run itself, with the run folder locked and checked."""
    with distributed_runtime(cfg) as rt:
        if stale and dist_from_env().is_master:
            clear_run(stale)  # --overwrite
        torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts)
        return Trainer(cfg, rt, factory).fit()
