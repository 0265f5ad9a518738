"""The restart journal, OUT/.work/journal.json: each finished shard's files and sha256 and,
for sequential sources, how far the spill got. Saved atomically after every step, so a rerun
with the same arguments (same fingerprint) keeps what is finished and redoes the rest."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from depthkit.core.atomic import write_atomic
from depthkit.shard import schema
from depthkit.shard.config import ShardConfig
from depthkit.shard.plan import Plan

log = logging.getLogger(__name__)

WORK_DIR = ".work"
JOURNAL = "journal.json"


def journal_path(out: Path) -> Path:
    """Where the journal of a shard folder lives."""
    return out / WORK_DIR / JOURNAL


def run_fingerprint(plan: Plan, cfg: ShardConfig, resolutions: tuple[int, ...],
                    sources: Sequence[Path]) -> str:
    """What makes two runs write the same files: the plan, resolutions, options, sources."""
    h = hashlib.sha256(plan.fingerprint().encode())
    h.update(json.dumps({"res": resolutions, "max_pixels": cfg.max_pixels,
                         "src": [str(s.resolve()) for s in sources],
                         "format": schema.FORMAT_VERSION}).encode())
    return h.hexdigest()


def load_journal(out: Path, fingerprint: str) -> dict[str, Any]:
    """The journal of an earlier run of the same plan, or a fresh one."""
    fresh: dict[str, Any] = {"fingerprint": fingerprint, "done": {}, "spill": None}
    path = journal_path(out)
    try:
        journal = json.loads(path.read_text())
    except (OSError, ValueError):
        return fresh
    if journal.get("fingerprint") != fingerprint:
        log.info("existing %s is for other arguments: starting afresh", path)
        return fresh
    return journal


def save_journal(out: Path, journal: dict[str, Any]) -> None:
    """Write the journal atomically (a kill leaves the old or the new one, never half)."""
    write_atomic(journal_path(out), json.dumps(journal, separators=(",", ":")).encode())
