"""The training loop: `fit(TrainConfig)` runs stages (res, epochs) of `train_one_epoch` and
`evaluate`, with AMP, checkpoints, TensorBoard and DDP (rank 0 alone logs and writes).

Resume semantics (see `Trainer.resume`): a checkpoint taken at the resolution the run is at
continues exactly where it stopped (epoch, step, batch within the epoch, optimiser, LR schedule,
scaler, RNG); a checkpoint from another resolution (the original's `--res 128 --resume ...`)
seeds the weights of a new stage whose optimiser and LR schedule start fresh.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from depthkit.core.dist import (
    DistInfo,
    all_reduce_sum,
    dist_from_env,
    init_distributed,
    pick_device,
)
from depthkit.core.dist import shutdown_distributed as _shutdown
from depthkit.core.errors import DepthkitError
from depthkit.core.normalization import denormalize_images
from depthkit.core.progress import progress_bar
from depthkit.model.checkpoint import (
    build_model_from,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    unwrap,
)
from depthkit.model.networks import (
    count_parameters,
    create_model,
    forward_flops,
    model_kwargs,
    resolve_name,
    to_outputs,
)
from depthkit.train.losses import Criterion, LossConfig, build_criterion

log = logging.getLogger(__name__)

# The original's batch sizes per resolution (Colab memory); other sizes scale by pixel count.
ORIGINAL_BATCH = {64: 100, 128: 32, 224: 12}
OPTIMIZERS = ("sgd", "adamw")


class Loader(Protocol):
    """What training needs from a loader (depthkit.loader.pipeline.Loader fits)."""

    norm: dict[str, dict[str, list[float]]]

    def __iter__(self) -> Iterator[dict[str, Tensor]]: ...
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...


@dataclass(frozen=True)
class LoaderRequest:
    """What `fit` asks a loader factory for."""

    split: str
    res: int
    batch_size: int
    train: bool  # augment + shuffle + drop_last when True
    dist: DistInfo
    device: str
    seed: int
    num_threads: int
    channels_last: bool


LoaderFactory = Callable[[LoaderRequest], Loader]


@dataclass(frozen=True)
class Stage:
    """Train `epochs` epochs on the `res` px shard copy."""

    res: int
    epochs: int


def parse_schedule(text: str) -> tuple[Stage, ...]:
    """'64:5,128:3,224:1' -> stages; DepthkitError naming --schedule if malformed."""
    stages = []
    for part in text.split(","):
        try:
            res, epochs = (int(v) for v in part.strip().split(":"))
        except ValueError:
            raise DepthkitError(
                f"--schedule: bad stage '{part}' (want RES:EPOCHS, e.g. 64:5,128:3,224:1)"
            ) from None
        if res <= 0 or res % 16 or epochs <= 0:
            raise DepthkitError(
                f"--schedule: stage '{part}' needs a resolution divisible by 16 and epochs >= 1"
            )
        stages.append(Stage(res, epochs))
    return tuple(stages)


def default_batch_size(res: int) -> int:
    """The original batch size at 64/128/224 px; in between, scaled by pixel count."""
    if res in ORIGINAL_BATCH:
        return ORIGINAL_BATCH[res]
    return max(1, round(100 * (64 / res) ** 2))


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs (the CLI fills it from its options)."""

    shards: Path
    out: Path = Path("runs/depthkit")
    stages: tuple[Stage, ...] = (Stage(64, 5),)
    model: str = "default"
    model_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None  # None: ORIGINAL_BATCH per resolution
    optimizer: str = "sgd"  # "sgd" (original: momentum, L2, StepLR) | "adamw" (one-cycle)
    lr: float | None = None  # None: 0.047 (sgd) / 3e-3 (adamw peak)
    momentum: float = 0.9
    weight_decay: float | None = None  # None: 1e-3 (sgd, as L2) / 1e-2 (adamw, decoupled)
    step_size: int = 2  # StepLR: epochs between LR drops (sgd)
    gamma: float = 0.1  # StepLR factor (sgd)
    warmup: float = 0.25  # one-cycle: fraction of steps rising to the peak (adamw)
    loss: LossConfig = field(default_factory=LossConfig)
    amp: bool = False
    amp_dtype: str = "auto"  # auto (bf16 where supported, else fp16) | bf16 | fp16
    channels_last: bool | None = None  # None: on for CUDA, off on CPU
    compile: bool = False
    device: str = "auto"  # auto | cpu | cuda
    augment: bool = True
    num_threads: int = 2  # loader threads per rank
    seed: int = 0
    save_every: int = 500  # steps between last.pt writes (0: only per epoch)
    log_every: int = 20  # steps between scalar logs (each is a CPU-GPU sync)
    image_every: int = 500  # steps between image grids (0: per epoch only)
    val_every: int = 1  # epochs between validations (0: never)
    max_steps: int | None = None  # stop (and save) after this many optimiser steps in total
    logdir: Path | None = None  # None: <out>/tb
    resume: Path | None = None

    @property
    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    def batch_for(self, res: int) -> int:
        return self.batch_size or default_batch_size(res)

    def stage_at(self, epoch: int) -> Stage | None:
        """The stage that global epoch `epoch` (0-based) belongs to; None past the end."""
        for stage in self.stages:
            if epoch < stage.epochs:
                return stage
            epoch -= stage.epochs
        return None


def config_record(cfg: TrainConfig) -> dict[str, Any]:
    """The config as primitives (stored in checkpoints, weights_only-safe)."""

    def prim(v: Any) -> Any:
        if is_dataclass(v):
            return {k: prim(x) for k, x in asdict(v).items()}
        if isinstance(v, dict):
            return {str(k): prim(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [prim(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return prim(cfg)


# ---------------------------------------------------------------------------------------------
# Runtime: device, precision, process role
# ---------------------------------------------------------------------------------------------


def pick_amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: None without --amp; bf16 on CPU; bf16 (or fp16) on CUDA."""
    if not cfg.amp:
        return None
    if cfg.amp_dtype not in ("auto", "bf16", "fp16"):
        raise DepthkitError(f"--amp-dtype: '{cfg.amp_dtype}' is not auto, bf16 or fp16")
    if device.type == "cpu":
        if cfg.amp_dtype == "fp16":
            raise DepthkitError("--amp-dtype fp16 needs CUDA; on CPU --amp means bf16 autocast")
        return torch.bfloat16
    if cfg.amp_dtype == "fp16" or (cfg.amp_dtype == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


@dataclass(frozen=True)
class Runtime:
    """Device, precision and process role of this rank."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    dist: DistInfo

    def autocast(self) -> AbstractContextManager:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        fmt = torch.channels_last if self.channels_last else torch.preserve_format
        out = {}
        for k, v in batch.items():
            v = v.to(self.device, non_blocking=True)
            out[k] = v.contiguous(memory_format=fmt) if k in ("bg", "fgbg") else v
        return out


# ---------------------------------------------------------------------------------------------
# One epoch, one evaluation
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainState:
    """What a checkpoint restores."""

    model: nn.Module  # possibly DDP/compile-wrapped
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    epoch: int = 0  # completed epochs (global, across stages)
    step: int = 0  # optimiser steps taken
    batch_in_epoch: int = 0  # batches of `epoch` already trained (mid-epoch checkpoints)
    best: float = math.inf  # best validation loss so far
    per_step_scheduler: bool = False


class OneCycle:
    """LR factor of a one-cycle schedule: linear warm-up to 1, cosine down to ~0.

    A callable object (not a function) so LambdaLR keeps it in state_dict; progress past the
    planned total stays at the floor instead of failing like OneCycleLR.
    """

    def __init__(self, total_steps: int, warmup: float = 0.25, floor: float = 1e-3) -> None:
        self.total_steps, self.warmup, self.floor = max(1, total_steps), warmup, floor

    def __call__(self, step: int) -> float:
        t = min(step / self.total_steps, 1.0)
        w = max(self.warmup, 1e-8)
        if t < w:
            return self.floor + (1 - self.floor) * t / w
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * (t - w) / (1 - w)))


# on_step(state, batch, detached outputs, detached loss, detached per-head losses)
Hook = Callable[["TrainState", dict[str, Tensor], dict[str, Tensor], Tensor, dict], None]


def train_one_epoch(
    state: TrainState,
    loader: Iterable[dict[str, Tensor]],
    criterion: Criterion,
    rt: Runtime,
    *,
    skip: int = 0,
    max_steps: int | None = None,
    on_step: Hook | None = None,
) -> dict[str, float]:
    """Train over one pass of `loader` (after skipping `skip` batches already trained).

    Returns mean per-head losses over the batches trained. `on_step` runs after every
    optimiser step (logging, checkpoints) with detached outputs and losses.
    """
    model, opt, scaler = state.model, state.optimizer, state.scaler
    model.train()
    sums = torch.zeros(3, device=rt.device)  # total, mask, depth (summed on device: no sync)
    n = 0
    for i, batch in enumerate(loader):
        if i < skip:
            continue  # fast-forward a resumed epoch (the loader still decodes these)
        if max_steps is not None and state.step >= max_steps:
            break
        batch = rt.to_device(batch)
        with rt.autocast():
            out = model(batch["bg"], batch["fgbg"])
        loss, parts = criterion(out, batch)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if state.per_step_scheduler:
            state.scheduler.step()
        state.step += 1
        state.batch_in_epoch = i + 1
        sums += torch.stack([loss.detach(), parts["mask"], parts["depth"]])
        n += 1
        if on_step is not None:
            out = {k: v.detach() for k, v in out.items()}
            on_step(state, batch, out, loss.detach(), parts)
    means = (sums / max(n, 1)).tolist()
    return {"loss": means[0], "mask": means[1], "depth": means[2], "batches": n}


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable[dict[str, Tensor]], criterion: Criterion, rt: Runtime
) -> dict[str, float]:
    """Validation losses (mean per sample) and MetricAccumulator metrics, reduced over ranks."""
    from depthkit.eval.metrics import MetricAccumulator

    model.eval()
    acc = MetricAccumulator()
    sums = torch.zeros(4, dtype=torch.float64, device=rt.device)  # total, mask, depth, samples
    for batch in loader:
        batch = rt.to_device(batch)
        with rt.autocast():
            out = model(batch["bg"], batch["fgbg"])
        loss, parts = criterion(out, batch)
        b = batch["mask"].shape[0]
        sums += torch.stack([loss.detach() * b, parts["mask"] * b, parts["depth"] * b,
                             torch.tensor(float(b), device=rt.device)]).double()
        probs = to_outputs(out)
        acc.update(probs["mask"], batch["mask"], probs["depth"], batch["depth"])
    all_reduce_sum(sums)
    acc.reduce()
    total, mask, depth, count = sums.tolist()
    count = max(count, 1.0)
    return {"loss": total / count, "loss_mask": mask / count, "loss_depth": depth / count,
            **acc.compute()}


# ---------------------------------------------------------------------------------------------
# Images for TensorBoard
# ---------------------------------------------------------------------------------------------


def image_grid(
    batch: dict[str, Tensor], out: dict[str, Tensor], norm: dict[str, Any], rows: int = 4
) -> Tensor:
    """(3, H*rows, W*6) picture: bg | fgbg | true mask | predicted mask | true depth | pred."""

    def denorm(x: Tensor, key: str) -> Tensor:
        stats = norm.get(key) if norm else None
        if not stats:
            return x.clamp(0, 1)
        return denormalize_images(x, stats["mean"], stats["std"])

    k = min(rows, batch["bg"].shape[0])
    pred = to_outputs({key: v[:k] for key, v in out.items()})
    cols = [
        denorm(batch["bg"][:k].float(), "bg"),
        denorm(batch["fgbg"][:k].float(), "fgbg"),
        batch["mask"][:k].float().expand(-1, 3, -1, -1),
        pred["mask"].expand(-1, 3, -1, -1),
        batch["depth"][:k].float().expand(-1, 3, -1, -1),
        pred["depth"].expand(-1, 3, -1, -1),
    ]
    rows_img = torch.cat(cols, dim=3)  # (k, 3, H, 6W)
    return torch.cat(list(rows_img), dim=1).detach().cpu()  # (3, kH, 6W)


# ---------------------------------------------------------------------------------------------
# Building blocks of a run
# ---------------------------------------------------------------------------------------------


def shard_loader_factory(cfg: TrainConfig) -> LoaderFactory:
    """Loaders from the depthkit shard pipeline (DALI), after checking the shards up front."""
    from depthkit.shard.manifest import load_manifest, split_files

    manifest = load_manifest(cfg.shards)  # missing folder / manifest -> one-line error
    for stage in cfg.stages:
        split_files(manifest, stage.res, "train")  # missing resolution -> one-line error
        if cfg.val_every:
            split_files(manifest, stage.res, "val")

    def make(req: LoaderRequest) -> Loader:
        from depthkit.loader.augment import AugmentConfig
        from depthkit.loader.pipeline import LoaderConfig, build_loader

        return build_loader(LoaderConfig(
            shards=Path(cfg.shards), split=req.split, res=req.res, batch_size=req.batch_size,
            augment=AugmentConfig() if (req.train and cfg.augment) else None,
            shuffle=req.train, seed=req.seed, rank=req.dist.rank,
            world_size=req.dist.world_size, device=req.device, num_threads=req.num_threads,
            drop_last=req.train, channels_last=req.channels_last,
        ))

    return make


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (momentum, L2 via weight_decay; the original) or AdamW (decoupled decay)."""
    if cfg.optimizer == "sgd":
        lr = 0.047 if cfg.lr is None else cfg.lr
        wd = 1e-3 if cfg.weight_decay is None else cfg.weight_decay
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=wd)
    if cfg.optimizer == "adamw":
        lr = 3e-3 if cfg.lr is None else cfg.lr
        wd = 1e-2 if cfg.weight_decay is None else cfg.weight_decay
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    raise DepthkitError(f"--optimizer: '{cfg.optimizer}' is not one of {', '.join(OPTIMIZERS)}")


def build_scheduler(
    cfg: TrainConfig, opt: torch.optim.Optimizer, total_steps: int
) -> tuple[torch.optim.lr_scheduler.LRScheduler, bool]:
    """StepLR stepped per epoch (sgd) or one-cycle stepped per batch (adamw)."""
    if cfg.optimizer == "sgd":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
        return sched, False
    return torch.optim.lr_scheduler.LambdaLR(opt, OneCycle(total_steps, cfg.warmup)), True


class Trainer:
    """Owns one run: the state, the loaders per stage, logging and checkpoints."""

    def __init__(self, cfg: TrainConfig, rt: Runtime, make_loader: LoaderFactory) -> None:
        self.cfg, self.rt, self.make_loader = cfg, rt, make_loader
        self.master = rt.dist.is_master
        self.criterion = build_criterion(cfg.loss)
        self.train_loaders: dict[int, Loader] = {}
        self.val_loaders: dict[int, Loader] = {}
        self.writer: Any = None
        self.history: list[dict[str, Any]] = []
        self.res = cfg.stages[0].res
        self.norm: dict[str, Any] = {}
        self._window = (time.perf_counter(), 0)  # (start time, samples) of the rate window

        resume = load_checkpoint(cfg.resume) if cfg.resume else None
        if resume is not None:
            name = resume["meta"]["model_name"]
            if cfg.model != "default" and resolve_name(cfg.model) != name:
                raise DepthkitError(
                    f"--resume {cfg.resume} holds model '{name}', not --model {cfg.model}"
                )
            model = build_model_from(resume, cfg.resume)
            self.model_name, self.model_kwargs = name, dict(resume["meta"]["model_kwargs"])
        else:
            self.model_name = resolve_name(cfg.model)
            self.model_kwargs = model_kwargs(cfg.model, **cfg.model_options)
            model = create_model(self.model_name, **self.model_kwargs)
        self.params = count_parameters(model)
        self.flops = {s.res: forward_flops(model, s.res) for s in cfg.stages}
        model = model.to(rt.device)
        if rt.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.plain_model = model

        for stage in cfg.stages:
            self.train_loaders[stage.res] = self._loader("train", stage.res, train=True)
        total_steps = sum(s.epochs * len(self.train_loaders[s.res]) for s in cfg.stages)
        opt = build_optimizer(cfg, model)
        sched, per_step = build_scheduler(cfg, opt, total_steps)
        scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
        wrapped = self._wrap(model)
        self.state = TrainState(wrapped, opt, sched, scaler, per_step_scheduler=per_step)
        if resume is not None:
            self.resume(resume)

    # -- setup ---------------------------------------------------------------------------------

    def _loader(self, split: str, res: int, train: bool) -> Loader:
        cfg = self.cfg
        return self.make_loader(LoaderRequest(
            split=split, res=res, batch_size=cfg.batch_for(res), train=train, dist=self.rt.dist,
            device=str(self.rt.device), seed=cfg.seed, num_threads=cfg.num_threads,
            channels_last=self.rt.channels_last,
        ))

    def _wrap(self, model: nn.Module) -> nn.Module:
        """torch.compile first, then DDP (as nanoGPT does); `unwrap` undoes both."""
        if self.cfg.compile:
            model = torch.compile(model)
        if self.rt.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.rt.device.index] if self.rt.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        return model

    def resume(self, ck: dict[str, Any]) -> None:
        """Continue the checkpointed run, or start a new stage from its weights (see module)."""
        meta, s = ck["meta"], self.state
        stage = self.cfg.stage_at(int(meta["epoch"]))
        same_stage = stage is not None and stage.res == int(meta["res"])
        if not same_stage and int(meta["res"]) == self.cfg.stages[0].res:
            same_stage = int(meta["epoch"]) >= self.cfg.total_epochs  # nothing left: finished
        if same_stage:
            try:
                s.optimizer.load_state_dict(ck["optimizer"])
                s.scheduler.load_state_dict(ck["scheduler"])
                if ck.get("scaler"):
                    s.scaler.load_state_dict(ck["scaler"])
            except (KeyError, ValueError, RuntimeError) as err:
                raise DepthkitError(
                    f"--resume {self.cfg.resume}: optimiser/scheduler state does not fit this "
                    f"run (--optimizer {self.cfg.optimizer}?): {str(err).splitlines()[0]}"
                ) from None
            s.epoch, s.step = int(meta["epoch"]), int(meta["step"])
            s.batch_in_epoch = int(meta.get("batch_in_epoch", 0))
            s.best = float(meta.get("best", math.inf))
            if "rng" in ck:
                restore_rng(ck["rng"])
            log.info("resumed %s at epoch %d, step %d (+%d batches)",
                     self.cfg.resume, s.epoch, s.step, s.batch_in_epoch)
        else:
            s.step = int(meta["step"])  # TensorBoard curves continue; epochs count afresh
            log.info("new stage: weights from %s (%s px, epoch %s); optimiser and LR schedule "
                     "start fresh at %d px", self.cfg.resume, meta["res"], meta["epoch"],
                     self.cfg.stages[0].res)

    # -- logging and checkpoints ---------------------------------------------------------------

    def _open_writer(self) -> None:
        if not self.master:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.cfg.logdir or Path(self.cfg.out) / "tb"))

    def save(self, name: str, val: dict[str, float] | None = None) -> Path | None:
        """Write <out>/<name> (rank 0 only); atomic."""
        if not self.master:
            return None
        s = self.state
        meta = {
            "model_name": self.model_name, "model_kwargs": self.model_kwargs, "res": self.res,
            "norm": self.norm, "epoch": s.epoch, "step": s.step,
            "batch_in_epoch": s.batch_in_epoch, "best": s.best,
            "config": config_record(self.cfg), "val": val or {},
            "params": self.params,
        }
        path = Path(self.cfg.out) / name
        save_checkpoint(path, {
            "model": unwrap(s.model).state_dict(), "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict(), "scaler": s.scaler.state_dict(),
            "meta": meta, "rng": capture_rng(),
        })
        return path

    def _on_step(self, state: TrainState, batch: dict[str, Tensor], out: dict[str, Tensor],
                 loss: Tensor, parts: dict[str, Tensor], advance: Callable[..., None]) -> None:
        cfg, w = self.cfg, self.rt.dist.world_size
        bsz = batch["bg"].shape[0] * w
        self._window = (self._window[0], self._window[1] + bsz)
        fields: dict[str, Any] = {}
        if cfg.log_every and state.step % cfg.log_every == 0:
            # .item() is a CPU-GPU sync point: only every log_every steps.
            t0, n = self._window
            rate = n / max(time.perf_counter() - t0, 1e-9)
            self._window = (time.perf_counter(), 0)
            lr = state.optimizer.param_groups[0]["lr"]
            fields = {"loss": f"{loss.item():.4f}", "lr": f"{lr:.2e}"}
            if self.writer is not None:
                self.writer.add_scalar("train/loss", loss.item(), state.step)
                self.writer.add_scalar("train/loss_mask", parts["mask"].item(), state.step)
                self.writer.add_scalar("train/loss_depth", parts["depth"].item(), state.step)
                self.writer.add_scalar("train/lr", lr, state.step)
                self.writer.add_scalar("train/samples_per_s", rate, state.step)
        advance(bsz, **fields)
        if self.writer is not None and cfg.image_every and state.step % cfg.image_every == 0:
            self.writer.add_image("train/samples", image_grid(batch, out, self.norm), state.step)
        if cfg.save_every and state.step % cfg.save_every == 0:
            self.save("last.pt")

    # -- the run -------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Run every remaining epoch of every stage; returns the history and final metrics."""
        cfg, s = self.cfg, self.state
        self._open_writer()
        if self.master:
            flops = ", ".join(f"{r} px {f / 1e9:.2f}" for r, f in self.flops.items())
            log.info("model %s: %s parameters; forward GFLOPs/sample: %s",
                     self.model_name, f"{self.params:,}", flops)
        start = time.perf_counter()
        try:
            while s.epoch < cfg.total_epochs:
                if cfg.max_steps is not None and s.step >= cfg.max_steps:
                    break
                self._run_epoch()
        finally:
            if self.writer is not None:
                self.writer.flush()
                self.writer.close()
        return {"history": self.history, "epochs": s.epoch, "steps": s.step,
                "master": self.master, "model": unwrap(s.model),
                "seconds": time.perf_counter() - start, "best_val_loss": s.best,
                "params": self.params, "flops": self.flops}

    def _run_epoch(self) -> None:
        cfg, s = self.cfg, self.state
        stage = cfg.stage_at(s.epoch)
        assert stage is not None
        self.res = stage.res
        loader = self.train_loaders[stage.res]
        self.norm = dict(getattr(loader, "norm", {}) or {})
        loader.set_epoch(s.epoch)
        skip, s.batch_in_epoch = s.batch_in_epoch, 0
        bsz = cfg.batch_for(stage.res) * self.rt.dist.world_size
        total = len(loader) * bsz
        label = f"epoch {s.epoch + 1}/{cfg.total_epochs} @ {stage.res}px"
        self._window = (time.perf_counter(), 0)
        t0 = time.perf_counter()
        with progress_bar(label, total=total, unit="samples", enabled=self.master) as advance:
            advance(skip * bsz)

            def on_step(state: TrainState, batch: dict[str, Tensor], out: dict[str, Tensor],
                        loss: Tensor, parts: dict[str, Tensor]) -> None:
                self._on_step(state, batch, out, loss, parts, advance)

            means = train_one_epoch(s, loader, self.criterion, self.rt, skip=skip,
                                    max_steps=cfg.max_steps, on_step=on_step)
        seconds = time.perf_counter() - t0
        if cfg.max_steps is not None and s.step >= cfg.max_steps and s.batch_in_epoch < len(
            loader
        ):
            self.save("last.pt")  # stopped mid-epoch: resumable from this batch
            self.history.append({"epoch": s.epoch, "res": stage.res, "partial": True, **means})
            return
        s.epoch += 1
        s.batch_in_epoch = 0
        if not s.per_step_scheduler:
            s.scheduler.step()
        record: dict[str, Any] = {"epoch": s.epoch, "res": stage.res, "seconds": seconds,
                                  "samples_per_s": means["batches"] * bsz / max(seconds, 1e-9),
                                  **{f"train_{k}": v for k, v in means.items()}}
        val = None
        if cfg.val_every and s.epoch % cfg.val_every == 0:
            if stage.res not in self.val_loaders:
                self.val_loaders[stage.res] = self._loader("val", stage.res, train=False)
            val = evaluate(s.model, self.val_loaders[stage.res], self.criterion, self.rt)
            record.update({f"val_{k}": v for k, v in val.items()})
            if self.writer is not None:
                for k, v in val.items():
                    self.writer.add_scalar(f"val/{k}", v, s.step)
            if val["loss"] < s.best:
                s.best = val["loss"]
                self.save("best.pt", val)
        if self.writer is not None:
            self.writer.add_scalar("train/epoch_samples_per_s", record["samples_per_s"], s.step)
        self.save("last.pt", val)
        self.history.append(record)
        if self.master:
            log.info("epoch %d/%d @ %d px: %s", s.epoch, cfg.total_epochs, stage.res,
                     summary_line(record))


def summary_line(record: dict[str, Any]) -> str:
    """A one-line summary of an epoch record (losses, key metrics, speed)."""
    keys = ("train_loss", "train_mask", "train_depth", "val_loss", "val_mask_iou",
            "val_depth_rmse", "samples_per_s")
    return " ".join(f"{k}={record[k]:.4g}" for k in keys if k in record)


def fit(cfg: TrainConfig, make_loader: LoaderFactory | None = None) -> dict[str, Any]:
    """Train as `cfg` says (single process or one torchrun rank); returns a summary dict.

    `make_loader` defaults to the DALI shard pipeline; tests pass in-memory loaders.
    """
    if not cfg.stages:
        raise DepthkitError("no training stages (give --res/--epochs or --schedule)")
    info = dist_from_env()
    device = pick_device(cfg.device, info.local_rank)
    owns_group = info.distributed and not torch.distributed.is_initialized()
    init_distributed(info, device)
    try:
        amp = pick_amp_dtype(cfg, device)
        if amp is not None and device.type == "cpu" and info.is_master:
            log.info("--amp on CPU: bf16 autocast for convolutions/matmuls, no grad scaler; "
                     "fast only on CPUs with bf16 units (AMX/AVX512-BF16), else slower than fp32")
        channels_last = cfg.channels_last if cfg.channels_last is not None else (
            device.type == "cuda")
        rt = Runtime(device=device, amp_dtype=amp, channels_last=channels_last, dist=info)
        torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts)
        factory = make_loader or shard_loader_factory(cfg)
        return Trainer(cfg, rt, factory).fit()
    finally:
        if owns_group:
            _shutdown()


# ---------------------------------------------------------------------------------------------
# In-memory loader: the model-only ceiling in benchmarks, and tests
# ---------------------------------------------------------------------------------------------


class TensorLoader:
    """Batches from tensors already in memory, split over ranks like the shard loader.

    Rank r of w takes samples r, r + w, ... of a per-epoch permutation (seeded by seed + epoch),
    so ranks see disjoint shares; drop_last keeps full batches and equal counts on every rank.
    """

    def __init__(self, data: dict[str, Tensor], batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = True,
                 norm: dict[str, Any] | None = None) -> None:
        self.data, self.batch_size, self.shuffle = data, batch_size, shuffle
        self.seed, self.rank, self.world_size, self.drop_last = seed, rank, world_size, drop_last
        self.norm = norm or {}
        self.epoch = 0
        self.n = next(iter(data.values())).shape[0]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        per_rank = self.n // self.world_size if self.drop_last else None
        mine = order[self.rank :: self.world_size]
        return mine[:per_rank] if per_rank is not None else mine

    def __len__(self) -> int:
        k = len(self._indices())
        return k // self.batch_size if self.drop_last else math.ceil(k / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        idx = self._indices()
        for b in range(len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            yield {k: v[sel] for k, v in self.data.items()}


def tensor_loader_factory(
    train: dict[str, Tensor], val: dict[str, Tensor] | None = None,
    norm: dict[str, Any] | None = None,
) -> LoaderFactory:
    """A LoaderFactory over in-memory tensors (same data at every resolution request, resized)."""

    def resized(data: dict[str, Tensor], res: int) -> dict[str, Tensor]:
        out = {}
        for k, v in data.items():
            if v.dim() == 4 and v.shape[-1] != res:
                mode = "nearest" if k == "mask" else "bilinear"
                kw: dict[str, Any] = {} if mode == "nearest" else {"align_corners": False}
                v = torch.nn.functional.interpolate(v, size=(res, res), mode=mode, **kw)
            out[k] = v
        return out

    def make(req: LoaderRequest) -> Loader:
        data = train if req.split == "train" or val is None else val
        return TensorLoader(resized(data, req.res), req.batch_size, shuffle=req.train,
                            seed=req.seed, rank=req.dist.rank, world_size=req.dist.world_size,
                            drop_last=req.train, norm=norm)

    return make


def format_summary(result: dict[str, Any], cfg: TrainConfig) -> str:
    """The end-of-run summary (empty on non-master ranks, which return no history)."""
    if not result.get("master", True):
        return ""
    lines = [f"trained {result['epochs']} epoch(s), {result['steps']} steps in "
             f"{result['seconds']:.0f} s; model {result['params']:,} parameters"]
    for rec in result["history"]:
        line = summary_line(rec)
        if line:
            lines.append(f"  epoch {rec['epoch']} @ {rec['res']} px: {line}")
    written = [str(Path(cfg.out) / name) for name in ("last.pt", "best.pt")
               if (Path(cfg.out) / name).is_file()]
    lines.append(f"checkpoints: {', '.join(written) or 'none'}; "
                 f"TensorBoard: {cfg.logdir or Path(cfg.out) / 'tb'}")
    return "\n".join(lines)
