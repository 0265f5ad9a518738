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
MAX_RES = 4096  # largest --res accepted


@dataclass(frozen=True)
class ShardConfig:
    """Everything `depthkit shard` is asked to do."""

    out: Path = Path("shards")
    resolutions: tuple[int, ...] | None = None  # None: the source's own size (native.py)
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
        if self.resolutions is not None and not self.resolutions:
            raise DepthkitError("--res needs at least one resolution")
        for r in self.resolutions or ():
            schema.check_res(r, "--res")
            if r > MAX_RES:
                raise DepthkitError(f"--res {r}: must be at most {MAX_RES} pixels")
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
    kept_samples: int = 0  # samples in the shards kept from an earlier run
    resolutions: tuple[int, ...] = ()
    native_res: bool = False  # the resolution is the source's own (no --res given)
    split: str = "random"
    val_bgs: tuple[int, ...] = ()  # backgrounds of the val samples (by-bg: held out whole)
    backgrounds: int = 0  # backgrounds the planned samples use
    removed: tuple[str, ...] = ()  # resolution folders of an earlier run deleted, e.g. "224/"

    @property
    def written(self) -> int:
        return sum(self.counts.values())

    @property
    def converted(self) -> int:
        """Samples this run converted (the rest were kept or resumed from an earlier run)."""
        return max(0, self.written - self.kept_samples - self.resumed)

    @property
    def rate(self) -> float:
        """Samples converted per second of this run."""
        return self.converted / self.seconds if self.seconds > 0 else 0.0


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


SHOW_IDS = 8  # background ids listed in full; more are cut to these and a count


def _ids(ids: tuple[int, ...]) -> str:
    shown = ", ".join(map(str, ids[:SHOW_IDS]))
    return shown + (", ..." if len(ids) > SHOW_IDS else "")


def _first_line(s: ShardSummary) -> str:
    """Samples written, MB, time, and the rate of this run's own conversions."""
    line = (f"wrote {s.counts['train']:,} train + {s.counts['val']:,} val samples to {s.out}/ "
            f"({_mb(s.bytes)}) in {s.seconds:,.1f} s")
    earlier = s.kept_samples + s.resumed
    if earlier:
        line += f", {s.converted:,} converted by this run ({earlier:,} kept from an earlier one)"
    return line + f", {s.rate:,.0f} samples/s"


def _layout_lines(s: ShardSummary) -> list[str]:
    """Which resolutions were written (and removed) and which backgrounds went to val."""
    lines = []
    if s.resolutions:
        px = ", ".join(map(str, s.resolutions)) + " px"
        lines.append(f"resolutions: {px}" + (" (the source's own size; --res to change)"
                                             if s.native_res else ""))
    if s.removed:
        lines.append(f"removed {', '.join(s.removed)} (not asked for this time)")
    if s.backgrounds:
        how = ("held out whole, --split by-bg" if s.split == "by-bg"
               else "random split of samples; --split by-bg holds whole ones out")
        vals = f"{_ids(s.val_bgs)} ({len(s.val_bgs)} of {s.backgrounds}; {how})"
        lines.append(f"val backgrounds: {vals if s.val_bgs else 'none'}")
    return lines


def format_shard_summary(s: ShardSummary) -> str:
    """The closing lines of `depthkit shard`."""
    lines = [_first_line(s), *_layout_lines(s)]
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
