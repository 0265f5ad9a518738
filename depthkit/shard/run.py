"""`depthkit shard`: repack a dataset in the original layout into WebDataset tar shards.

Data flow (the folder format is in depthkit/shard/schema.py and depthkit/shard/manifest.py):

1. list the source's sample keys (cheap: names only) and make the plan: split + seeded global
   shuffle + shards (depthkit/shard/plan.py);
2. write `<res>/backgrounds.tar` (each background once, checked and resized; files.py);
3. random-access sources (folder, zip): write each shard once, straight from the source in
   planned order (direct.py);
3'. sequential sources (the .7z set): stream the source once into per-shard spill buckets,
   then write each shard from its bucket (spill_path.py);
4. rejects.jsonl and manifest.json with per-channel stats (manifest.py).

Restart: OUT/.work/journal.json (journal.py) records each finished shard's sha256 (and, for
sequential sources, how far the spill got); a rerun with the same arguments keeps every
finished shard whose files still match, redoes the rest (resuming the spill where it
stopped) and ends with the same files and manifest.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from depthkit.core.errors import DepthkitError
from depthkit.core.lock import RunLock
from depthkit.core.pool import worker_pool
from depthkit.shard import schema
from depthkit.shard.config import ShardConfig, ShardSummary
from depthkit.shard.context import OnReject, RunContext
from depthkit.shard.direct import is_random_access, plan_refs, write_direct
from depthkit.shard.files import (
    check_out,
    prepare_out,
    remove_old_resolutions,
    remove_strays,
    shard_files_ok,
    write_backgrounds,
)
from depthkit.shard.journal import load_journal, run_fingerprint
from depthkit.shard.manifest import listed_paths, total_bytes, write_manifest
from depthkit.shard.native import source_resolution
from depthkit.shard.plan import make_plan
from depthkit.shard.spill_path import bucket_folder, write_spilled
from depthkit.source import Source, open_source

log = logging.getLogger(__name__)


def list_planned_samples(source: Source, cfg: ShardConfig) -> list[tuple[str, int]]:
    """(key, bg) of every sample the run takes: the source's keys (from names only, no image
    bytes read) filtered by --bgs/--limit."""
    pairs = list(source.keys())
    if cfg.bgs is not None:
        wanted = set(cfg.bgs)
        have = {bg for _, bg in pairs}
        missing = sorted(wanted - have)
        if missing:
            raise DepthkitError(f"--bgs: no samples for background(s) "
                                f"{', '.join(map(str, missing))} in the source")
        pairs = [p for p in pairs if p[1] in wanted]
    if cfg.limit is not None:
        pairs = pairs[: cfg.limit]
    if not pairs:
        raise DepthkitError("the source holds no samples to shard")
    return pairs


def write_shards(sources: Sequence[str | Path], cfg: ShardConfig) -> ShardSummary:
    """Shard a dataset in the original layout into `cfg.out` (see the module docstring);
    one run at a time per OUT (a second gets a one-line error naming the first)."""
    paths = [Path(s) for s in sources]
    check_out(Path(cfg.out), paths)  # before the lock creates OUT
    with RunLock(Path(cfg.out), "shard"), worker_pool(cfg.workers) as pool:  # before any bar
        return _write_shards(paths, cfg, pool)


def _rejecter(strict: bool) -> OnReject:
    """What happens to a skipped item: logged, or under --strict the end of the run."""

    def on_reject(path: str, reason: str, kind: str) -> None:
        if strict:
            raise DepthkitError(f"{path}: {reason} (--strict)")
        log.debug("rejected %s: %s", path, reason)

    return on_reject


def _write_shards(sources: list[Path], cfg: ShardConfig,
                  pool: ProcessPoolExecutor | None) -> ShardSummary:
    t0 = time.monotonic()
    out = Path(cfg.out)
    check_out(out, sources)  # again under the lock
    with open_source(sources) as source:
        pairs = list_planned_samples(source, cfg)
        plan = make_plan(pairs, cfg.split, cfg.shard_size)
        subset = {bg for _, bg in pairs} if cfg.bgs or cfg.limit else None
        native = cfg.resolutions is None  # then the source's own size
        if native:
            cfg = replace(cfg, resolutions=(source_resolution(source, plan.slot, subset),))
        resolutions = tuple(sorted(set(cfg.resolutions or ())))
        fingerprint = run_fingerprint(plan, cfg, resolutions, sources)
        prepare_out(out, resolutions)
        run = RunContext(
            out=out, cfg=cfg, sources=sources, resolutions=resolutions, plan=plan,
            journal=load_journal(out, fingerprint), on_reject=_rejecter(cfg.strict), pool=pool,
            subset_bgs=subset)
        backgrounds = write_backgrounds(run, source)
        todo = _keep_finished(run)
        kept = (len(run.journal["done"]), _samples(run.journal["done"]))
        resumed, t_convert = 0, time.monotonic()
        if is_random_access(source):
            run.journal["spill"] = None
            refs, problems = plan_refs(run, source, backgrounds)
            write_direct(run, source, refs, todo)
        else:
            problems, resumed = write_spilled(run, source, set(backgrounds.ids), todo)
        t_convert = time.monotonic() - t_convert
    manifest = write_manifest(run, backgrounds, backgrounds.problems + problems)
    shutil.rmtree(bucket_folder(out), ignore_errors=True)
    remove_strays(out, resolutions, listed_paths(manifest))
    counts = manifest["counts"]
    summary = ShardSummary(out, {s: counts[s] for s in schema.SPLITS}, counts["rejected"],
                           manifest["rejects"]["by_reason"], total_bytes(manifest),
                           time.monotonic() - t0, kept[0], len(todo), resumed, kept[1])
    summary.convert_seconds = t_convert
    _describe(summary, run, dict(pairs), native)
    summary.removed = tuple(remove_old_resolutions(out, resolutions))
    return summary


def _describe(summary: ShardSummary, run: RunContext, bg_of: dict[str, int],
              native: bool) -> None:
    """Fill in what the summary says about the layout: resolutions, split, val backgrounds."""
    summary.resolutions = run.resolutions
    summary.native_res = native
    summary.split = run.cfg.split.method
    summary.val_bgs = tuple(sorted({bg_of[k] for s in run.plan.shards if s.split == "val"
                                    for k in s.keys}))
    summary.backgrounds = len(set(bg_of.values()))


def _samples(done: dict[str, Any]) -> int:
    """Samples in the finished shards of a journal (the same at every resolution)."""
    return sum(max((f["samples"] for f in rec.get("files", {}).values()), default=0)
               for rec in done.values())


def _keep_finished(run: RunContext) -> set[int]:
    """Keep the journal's shards an earlier run finished whose files are still intact;
    return the shards left to write."""
    done = {i: rec for i, rec in run.journal["done"].items()
            if shard_files_ok(run.out, run.plan.shards[int(i)], rec, run.resolutions)}
    run.journal["done"] = done
    return {i for i in range(len(run.plan.shards)) if str(i) not in done}
