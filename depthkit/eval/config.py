"""What `depthkit eval` and `depthkit predict` are asked to do.

Torch-free, so the CLI builds both commands from these fields (help in the field metadata,
see depthkit.core.options) without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from depthkit.core.options import option

_CHECKPOINT = {"help": "Checkpoint (.pt).", "flags": ("--checkpoint", "-c")}
_RES = "Model resolution (default: the checkpoint's)."
_DEVICE = "auto, cpu or cuda[:N]."


@dataclass(frozen=True)
class EvalConfig:
    """Options of `depthkit eval`."""

    checkpoint: Path = option(**_CHECKPOINT)
    shards: Path = option(help="Shard folder.", flags=("--shards", "-s"))
    split: str = option("val", "Split to evaluate.", choices=("val", "train"))
    res: int | None = option(None, _RES)
    shard_res: int | None = option(None, "Shard copy to read (default: --res if held, else "
                                         "largest).")
    batch_size: int = option(32, "Samples per batch.")
    device: str = option("auto", _DEVICE)
    num_threads: int = 2  # loader threads
    grid_samples: int = option(8, "Rows of the picture grid.")
    limit: int | None = option(None, "Stop after N samples.")
    verify: bool = option(False, "Run `depthkit verify` on the shards first (checksums, every "
                          "image decoded); without it only a quick check of sizes and indexes.")


@dataclass(frozen=True)
class PredictConfig:
    """Options of `depthkit predict`."""

    checkpoint: Path = option(**_CHECKPOINT)
    bg: Path = option(help="Background image, or a folder of them.")
    fgbg: Path = option(help="Composite image, or a folder (names match --bg).")
    out: Path = option(help="Output folder.", flags=("--out", "-o"))
    res: int | None = option(None, _RES)
    device: str = option("auto", _DEVICE)
