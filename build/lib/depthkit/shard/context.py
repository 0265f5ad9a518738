"""The fixed context of one shard run (output, options, plan, journal, worker pool), handed to
the direct and spill paths and the manifest writer instead of a long list of arguments."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depthkit.shard.config import ShardConfig
from depthkit.shard.plan import Plan

OnReject = Callable[[str, str, str], None]  # (path, reason, kind) of a skipped item


@dataclass
class RunContext:
    """One shard run: where it writes, what it was asked, its plan, and the journal it keeps."""

    out: Path
    cfg: ShardConfig
    sources: list[Path]
    resolutions: tuple[int, ...]  # ascending, no repeats
    plan: Plan
    journal: dict[str, Any]
    on_reject: OnReject
    pool: ProcessPoolExecutor | None
    subset_bgs: set[int] | None = None  # backgrounds --bgs/--limit keep (None: all)
