"""What one training run is asked to do: `TrainConfig`, its loss config and stage schedule.

Torch-free, so the CLI can build `depthkit train` from these fields without importing torch.
A field's metadata holds its command-line help ("help") and, where the CLI spells or parses
the option differently, "cli_name", "cli_type", "cli_default", "flags" and a "parse"
converter; a field fed by several options lists them under "options" (depthkit.cli_options).
"""

from __future__ import annotations

import math
import operator
import os
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any

from depthkit.core.errors import DepthkitError
from depthkit.core.options import option as _opt
from depthkit.shard.schema import check_res

# --help lists these and the parser checks them (torch-free copies of the names in
# model.registry, train.optim and train.losses; tests/test_cli.py keeps them equal).
MODEL_CHOICES = ("default", "diffunet", "diffunet-full", "diffunet-nodiff", "unetexp")
OPTIMIZER_CHOICES = ("sgd", "adamw")
MASK_LOSS_CHOICES = ("bce_dice", "bce_lovasz", "mse")
DEPTH_LOSS_CHOICES = ("l1_ssi_grad", "l1_ssim_grad", "mse")
AMP_DTYPE_CHOICES = ("auto", "bf16", "fp16")
# Per-rank batch sizes per resolution: the original's (Colab memory; also the CPU default) and
# the CUDA default (a GPU's memory); other resolutions: default_batch_size, gpu_batch_size.
ORIGINAL_BATCH = {64: 100, 128: 32, 224: 12}
GPU_BATCH = {64: 1024, 128: 512, 224: 256}
RECIPES = ("default", "original")  # --recipe: what the options left unset default to
# the optimiser of each recipe (its losses: LossConfig.filled), and each optimiser's defaults:
# lr (at the ORIGINAL_BATCH sizes; see TrainConfig.lr_scale) and weight decay
RECIPE_OPTIMIZER = {"default": "adamw", "original": "sgd"}
OPTIMIZER_DEFAULTS = {"adamw": (4e-3, 1e-2), "sgd": (0.047, 1e-3)}
# Loader threads per rank: CPU runs leave the cores to the model; CUDA runs give the loader the
# cores of the rank's share, one kept for the training process, at most LOADER_THREADS_MAX.
CPU_LOADER_THREADS = 2
LOADER_THREADS_MAX = 16
PREFETCH = {"cpu": 2, "cuda": 4}  # DALI prefetch queue depth (batches) per device kind


@dataclass(frozen=True)
class LossConfig:
    """Which loss per head and how they are weighted (total = mask_w * mask + depth_w * depth)."""

    mask: str | None = _opt(  # None: the recipe's (filled)
        None, "bce_dice (default), bce_lovasz (BCE + Lovasz hinge, an IoU surrogate) or mse "
        "(--recipe original).", cli_name="mask_loss", choices=MASK_LOSS_CHOICES)
    depth: str | None = _opt(
        None, "l1_ssi_grad (default: L1 + scale-and-shift-aligned L1 + multi-scale gradient "
        "matching), l1_ssim_grad (L1 + SSIM + gradient) or mse (--recipe original).",
        cli_name="depth_loss", choices=DEPTH_LOSS_CHOICES)
    mask_weight: float = _opt(1.0, "Weight of the mask loss.")
    depth_weight: float = _opt(1.0, "Weight of the depth loss.")
    dice_weight: float = 1.0  # of the Dice (bce_dice) or Lovasz (bce_lovasz) term
    ssim_weight: float = 1.0  # inside l1_ssim_grad
    grad_weight: float = 1.0  # inside l1_ssim_grad and l1_ssi_grad
    align_weight: float = 1.0  # inside l1_ssi_grad: the scale-and-shift-aligned L1
    grad_scales: int = 4  # inside l1_ssi_grad: scales of the gradient matching

    @classmethod
    def original(cls) -> LossConfig:
        """The course's loss: MSE on both heads."""
        return cls(mask="mse", depth="mse")

    def filled(self, recipe: str = "default") -> LossConfig:
        """The losses left unset (None) taken from `recipe`: mse for original."""
        original = recipe == "original"
        return replace(self, mask=self.mask or ("mse" if original else "bce_dice"),
                       depth=self.depth or ("mse" if original else "l1_ssi_grad"))


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
        check_res(res, f"--schedule: stage '{part}': resolution")
        if epochs <= 0:
            raise DepthkitError(f"--schedule: stage '{part}' needs epochs >= 1")
        stages.append(Stage(res, epochs))
    return tuple(stages)


def stages_from_options(res: int, epochs: int, schedule: str | None) -> tuple[Stage, ...]:
    """The CLI's --schedule if given, else one stage of --epochs at --res."""
    if schedule:
        return parse_schedule(schedule)
    if epochs <= 0:
        raise DepthkitError(f"--epochs {epochs}: must be >= 1")
    return (Stage(check_res(res, "--res"), epochs),)


def model_options_from_items(items: list[str] | None) -> dict[str, Any]:
    """Repeated --model-option KEY=VALUE items -> constructor keyword arguments."""
    from depthkit.model.registry import parse_model_options

    return parse_model_options(items or [])


STAGE_OPTIONS = (
    {"name": "res", "type": int, "default": 224, "help": "Resolution (px); reads that shard copy."},
    {"name": "epochs", "type": int, "default": 1, "help": "Epochs (total, counting resumed ones)."},
    {"name": "schedule", "type": str | None, "default": None,
     "help": "Progressive resizing RES:EPOCHS,..., e.g. 64:5,128:3,224:1 (overrides --res)."},
)


def default_batch_size(res: int) -> int:
    """The original batch size at 64/128/224 px; in between, scaled by pixel count."""
    if res in ORIGINAL_BATCH:
        return ORIGINAL_BATCH[res]
    return max(1, round(100 * (64 / res) ** 2))


def gpu_batch_size(res: int) -> int:
    """The CUDA default batch: GPU_BATCH at its resolutions; between two of them a power law
    through both (monotone), outside them scaled by pixel count; a multiple of 8."""
    anchors = sorted(GPU_BATCH)
    lo = max([r for r in anchors if r <= res], default=anchors[0])
    hi = min([r for r in anchors if r >= res], default=anchors[-1])
    if lo == hi:
        batch = GPU_BATCH[lo] * (lo / res) ** 2
    else:
        power = math.log(GPU_BATCH[lo] / GPU_BATCH[hi]) / math.log(hi / lo)
        batch = GPU_BATCH[lo] * (lo / res) ** power
    return max(8, round(batch / 8) * 8)


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs (the CLI fills it from its options)."""

    shards: Path = field(metadata={"help": "Shard folder (from `depthkit shard`).",
                                   "cli_default": Path("shards"), "flags": ("--shards", "-s")})
    out: Path = _opt(Path("runs/depthkit"), "Run folder: last.pt, best.pt, tb/.",
                     flags=("--out", "-o"))
    stages: tuple[Stage, ...] = field(
        default=(Stage(64, 5),), metadata={"options": STAGE_OPTIONS, "parse": stages_from_options})
    model: str = _opt("default", "Model (see README).", choices=MODEL_CHOICES)
    model_options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "Model constructor option KEY=VALUE, repeatable, e.g. widths='(16,32,48,64)'.",
        "cli_name": "model_option", "cli_type": list[str] | None, "cli_default": None,
        "parse": model_options_from_items})
    recipe: str = _opt("default", "What unset options default to: default (AdamW lr 4e-3 "
                       "one-cycle, bce_dice + l1_ssi_grad) or original (the course's SGD 0.047, "
                       "momentum 0.9, L2 1e-3, StepLR 2 x 0.1, MSE losses, augmentations with "
                       "rotate-90 and +-45 degrees).", choices=RECIPES)
    batch_size: int | None = _opt(  # None: per resolution and device (batch_for)
        None, "Per-rank batch, >= 1. Default: on CUDA 1024/512/256 at 64/128/224 px; on CPU and "
        "with --recipe original the original's 100/32/12; by pixel count between.")
    optimizer: str | None = _opt(  # None: the recipe's
        None, "adamw (one-cycle; default) or sgd (momentum, L2, StepLR; --recipe original).",
        choices=OPTIMIZER_CHOICES)
    lr: float | None = _opt(  # adamw: the peak
        None, "LR (default 4e-3 adamw, 0.047 sgd; with the CUDA default batch times "
        "sqrt(batch / the original's batch) at the first stage's px: 1.28e-2 adamw at 64 px).")
    momentum: float = 0.9
    weight_decay: float | None = _opt(  # sgd: as L2; adamw: decoupled
        None, "Default 1e-2 (adamw) / 1e-3 (sgd).")
    step_size: int = _opt(2, "sgd: epochs between LR drops.")  # StepLR
    gamma: float = _opt(0.1, "sgd: LR drop factor.")  # StepLR
    warmup: float = 0.25  # one-cycle: fraction of steps rising to the peak (adamw)
    loss: LossConfig = field(default_factory=LossConfig)
    amp: bool = _opt(False, "Mixed precision: bf16/fp16 (+grad scaler) on CUDA, bf16 autocast "
                     "on CPU.")
    amp_dtype: str = _opt("auto", "bf16 or fp16 (CUDA only; auto: bf16 where supported).",
                          choices=AMP_DTYPE_CHOICES)  # auto: bf16 if supported
    channels_last: bool | None = _opt(None, "Default: on for CUDA, off on CPU.",
                                      flags=("--channels-last/--no-channels-last",))
    compile: bool = _opt(False, "torch.compile the model.")
    device: str = _opt(  # fit resolves auto (core.dist.device_kind) before defaults are read
        "auto", "auto (CUDA if there is a GPU), cpu or cuda; under torchrun each rank takes "
        "GPU LOCAL_RANK. The defaults of batch, LR, workers and prefetch follow the device.")
    augment: bool = _opt(True, "Training augmentations.")
    num_threads: int | None = _opt(  # None: loader_threads()
        None, f"Loader threads per rank (default: {CPU_LOADER_THREADS} on CPU; on CUDA the "
        f"cores available / ranks on the machine - 1, at most {LOADER_THREADS_MAX}; --threads: "
        "deprecated spelling).", cli_name="workers", flags=("--workers", "-j", "--threads"))
    seed: int = _opt(0, "Seed of weights and data order.")
    save_every: int = _opt(500, "Steps between last.pt writes.")  # 0: only per epoch
    log_every: int = _opt(  # each is a CPU-GPU sync; the only one of the steps between saves
        20, "Steps between TensorBoard scalars; under torchrun also between the ranks' checks "
        "for a stop signal (0: no scalars, a check every step).")
    image_every: int = _opt(  # the last step of every epoch logs one as well
        500, "Steps between image grids; one at each epoch's end too (0: only those).")
    val_every: int = _opt(1, "Epochs between validations (0: none).")
    max_steps: int | None = _opt(None, "Stop after N steps (resumable).")  # then save
    logdir: Path | None = _opt(None, "TensorBoard folder (default OUT/tb).")
    resume: Path | None = _opt(None, "Checkpoint to continue from.")
    overwrite: bool = _opt(False, "Start again in a run folder that holds a run: delete its "
                           "last.pt, best.pt and TensorBoard event files first.")
    verify: bool = _opt(False, "Run `depthkit verify` on the shards first (checksums, every "
                        "image decoded); without it only a quick check of sizes and indexes.")
    progress: bool = _opt(True, "No progress bar.", cli_name="quiet", parse=operator.not_,
                          to_cli=operator.not_)

    def __post_init__(self) -> None:
        """Refuse values no run can use, before any work (one-line DepthkitError)."""
        if self.recipe not in RECIPES:
            raise DepthkitError(f"--recipe {self.recipe}: must be one of {', '.join(RECIPES)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise DepthkitError(f"--batch-size {self.batch_size}: must be >= 1")
        for stage in self.stages:
            check_res(stage.res, "--res")

    @property
    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    @property
    def tb_dir(self) -> Path:
        """Where TensorBoard logs go: --logdir, or <out>/tb."""
        return Path(self.logdir or Path(self.out) / "tb")

    @property
    def cuda(self) -> bool:
        """True when the run trains on a GPU (after fit resolved --device auto)."""
        return self.device.startswith("cuda")

    @property
    def gpu_batch(self) -> bool:
        """True when unset batch sizes take the GPU table (CUDA, not --recipe original)."""
        return self.cuda and self.recipe != "original"

    @property
    def prefetch(self) -> int:
        return PREFETCH["cuda" if self.cuda else "cpu"]

    def batch_for(self, res: int) -> int:
        """The per-rank batch of the stage at `res` px: --batch-size, else the default."""
        if self.batch_size is not None:
            return self.batch_size
        return gpu_batch_size(res) if self.gpu_batch else default_batch_size(res)

    def lr_scale(self) -> float:
        """Factor on the recipe's LR: sqrt(default batch / original batch) at the first stage
        when the GPU batch table is in use (square-root scaling, right for Adam and cautious
        for SGD, which has no warm-up); 1 otherwise."""
        if self.batch_size is not None or not self.gpu_batch or not self.stages:
            return 1.0
        res = self.stages[0].res
        return math.sqrt(gpu_batch_size(res) / default_batch_size(res))

    def loader_threads(self, local_ranks: int = 1) -> int:
        """Loader threads of one rank: --workers, else the device's default."""
        if self.num_threads is not None:
            return self.num_threads
        if not self.cuda:
            return CPU_LOADER_THREADS
        return max(1, min(LOADER_THREADS_MAX, available_cores() // max(1, local_ranks) - 1))

    def stage_at(self, epoch: int) -> Stage | None:
        """The stage that global epoch `epoch` (0-based) belongs to; None past the end."""
        for stage in self.stages:
            if epoch < stage.epochs:
                return stage
            epoch -= stage.epochs
        return None


def apply_recipe(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with the options left unset (None) filled from its recipe; explicit ones stay."""
    optimizer = cfg.optimizer or RECIPE_OPTIMIZER[cfg.recipe]
    lr, wd = OPTIMIZER_DEFAULTS.get(optimizer, (None, None))  # (an unknown one: build refuses)
    if lr is not None:
        lr *= cfg.lr_scale()
    return replace(cfg, optimizer=optimizer,
                   lr=cfg.lr if cfg.lr is not None else lr,
                   weight_decay=cfg.weight_decay if cfg.weight_decay is not None else wd,
                   loss=cfg.loss.filled(cfg.recipe))


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
