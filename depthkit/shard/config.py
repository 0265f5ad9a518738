"""What `depthkit shard` is asked to do (`ShardConfig`) and what a run did (`ShardSummary`,
printed by `format_shard_summary`), plus the CLI's integer-list parser."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from depthkit.core.errors import DepthkitError
from depthkit.shard import schema
from depthkit.shard.convert import DEFAULT_MAX_PIXELS
from depthkit.shard.plan import SplitConfig

BATCH = 32  # samples per worker task
CHECKPOINT_S = 2.0  # journal the spill at most this often


@dataclass(frozen=True)
class ShardConfig:
    """Everything `depthkit shard` is asked to do."""

    out: Path = Path("shards")
    resolutions: tuple[int, ...] = (224,)
    split: SplitConfig = field(default_factory=SplitConfig)
    shard_size: int = 2000
    bgs: tuple[int, ...] | None = None  # only these background ids
    limit: int | None = None  # only the first N samples (in key order) after `bgs`
    max_pixels: int = DEFAULT_MAX_PIXELS
    stats_samples: int = 256  # train samples (random: shards are shuffled) the stats use
    strict: bool = False
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    progress: bool = True
    checkpoint_s: float = CHECKPOINT_S
    batch: int = BATCH  # samples per worker task (no effect on the files written)

    def __post_init__(self) -> None:
        if not self.resolutions:
            raise DepthkitError("--res needs at least one resolution")
        for r in self.resolutions:
            if not 8 <= r <= 4096:
                raise DepthkitError(f"--res {r}: must be between 8 and 4096 pixels")
        if self.limit is not None and self.limit < 1:
            raise DepthkitError(f"--limit must be at least 1, not {self.limit}")
        if self.workers < 0:
            raise DepthkitError(f"--workers must be 0 or more, not {self.workers}")


@dataclass
class ShardSummary:
    """What a shard run did (printed by the CLI)."""

    out: Path
    counts: dict[str, int]
    rejected: int
    rejects_by_reason: dict[str, int]
    bytes: int
    seconds: float
    shards_kept: int
    shards_written: int
    resumed: int = 0  # samples an interrupted earlier run had already converted

    @property
    def written(self) -> int:
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


def parse_int_list(text: str | None, option: str) -> tuple[int, ...] | None:
    """'64,128,224' -> (64, 128, 224); None stays None; one-line error naming the option."""
    if text is None:
        return None
    try:
        values = tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise DepthkitError(f"{option} {text!r}: expected comma-separated integers") from None
    if not values:
        raise DepthkitError(f"{option}: no values given")
    return values


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def format_shard_summary(s: ShardSummary) -> str:
    """The closing lines of `depthkit shard`."""
    lines = [f"wrote {s.counts['train']:,} train + {s.counts['val']:,} val samples to {s.out}/ "
             f"({_mb(s.bytes)}) in {s.seconds:,.1f} s, {s.rate:,.0f} samples/s"]
    if s.resumed:
        lines.append(f"resumed after {s.resumed:,} samples converted by an earlier run")
    if s.shards_kept:
        lines.append(f"kept {s.shards_kept} shard(s) finished by an earlier run, "
                     f"wrote {s.shards_written}")
    if s.rejected:
        reasons = ", ".join(f"{k} {v}" for k, v in s.rejects_by_reason.items())
        lines.append(f"rejected {s.rejected:,} ({reasons}); see {s.out / schema.REJECTS_NAME}")
    else:
        lines.append("rejected 0")
    return "\n".join(lines)
