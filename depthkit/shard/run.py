"""`depthkit shard`: repack a dataset in the original layout into WebDataset tar shards.

Data flow (the folder format is in depthkit/schema.py and depthkit/manifest.py):

1. list the source's sample keys (cheap: names only) and make the plan: split + seeded global
   shuffle + shards (depthkit/shardplan.py);
2. write `<res>/backgrounds.tar` (each background once, checked and resized);
3. random-access sources (folder, zip): read each shard's samples directly in planned order;
   worker processes read the files themselves, decode-check and convert them
   (depthkit/convert.py) and return tar fragments (depthkit/shardparts.py), which the main
   process appends to the shard's tar (hashing as it writes): each shard is written once;
3'. sequential sources (the .7z set): stream the source once, converting in a process pool and
   appending each sample to its shard's spill bucket (depthkit/spill.py), then write each
   shard's tars from its bucket in planned order;
4. per-channel stats, rejects.jsonl and manifest.json.

Restart: OUT/.work/journal.json records (atomically) each finished shard's sha256 (and, for
sequential sources, how far the spill got); a rerun with the same arguments keeps every
finished shard whose files still match, redoes the rest (resuming the spill where it
stopped) and ends with the same files and manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from depthkit import __version__
from depthkit.core.atomic import write_atomic
from depthkit.core.errors import DepthkitError
from depthkit.core.progress import progress_bar
from depthkit.shard import schema
from depthkit.shard.convert import (
    DEFAULT_MAX_PIXELS,
    Rejected,
    SampleResult,
    convert_background,
    convert_batch,
)
from depthkit.shard.members import Part, convert_refs, sample_members, sample_meta
from depthkit.shard.plan import Plan, ShardSpec, SplitConfig, make_plan
from depthkit.shard.spill import Buckets, encode_record, iter_records
from depthkit.shard.stats import channel_stats
from depthkit.shard.tario import (
    AtomicTar,
    Fragment,
    index_text,
    list_members,
    remove_stale_tmp,
    sha256_file,
)

log = logging.getLogger(__name__)

WORK_DIR = ".work"
JOURNAL = "journal.json"
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


# ----------------------------------------------------------------------------- the source


def _open_source(paths: Sequence[Path]) -> Any:
    from depthkit.source.layout import open_source  # the layout reader (issue 2)

    return open_source([Path(p) for p in paths])


def _is_problem(item: Any) -> bool:
    """A layout `Problem` (path + reason) rather than a sample or a background."""
    return hasattr(item, "reason") and not hasattr(item, "fgbg")


def source_keys(source: Any) -> list[tuple[str, int]]:
    """(key, bg) of every fgbg member of a source, from names only (no image bytes read)."""
    return list(source.keys())


def _iter_samples(source: Any, bgs: set[int] | None) -> Iterator[Any]:
    """The source's samples unchecked (conversion checks them), limited to `bgs` if given."""
    return source.samples(check=False, bgs=bgs)


def list_planned_samples(source: Any, cfg: ShardConfig) -> list[tuple[str, int]]:
    """(key, bg) of every sample the run takes: the source's keys filtered by --bgs/--limit."""
    pairs = source_keys(source)
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


# ----------------------------------------------------------------------------- journal


def _journal_path(out: Path) -> Path:
    return out / WORK_DIR / JOURNAL


def _load_journal(out: Path, fingerprint: str) -> dict[str, Any]:
    """The journal of an earlier run of the same plan, or a fresh one."""
    fresh: dict[str, Any] = {"fingerprint": fingerprint, "done": {}, "spill": None}
    path = _journal_path(out)
    try:
        journal = json.loads(path.read_text())
    except (OSError, ValueError):
        return fresh
    if journal.get("fingerprint") != fingerprint:
        log.info("existing %s is for other arguments: starting afresh", path)
        return fresh
    return journal


def _save_journal(out: Path, journal: dict[str, Any]) -> None:
    write_atomic(_journal_path(out), json.dumps(journal, separators=(",", ":")).encode())


def _check_out(out: Path, sources: Sequence[Path]) -> None:
    """Refuse an OUT that would mix our files with someone else's."""
    out_r = out.resolve()
    for src in sources:
        if Path(src).resolve() == out_r:
            raise DepthkitError(f"-o {out}: the output folder is the source")
    if out.exists() and not out.is_dir():
        raise DepthkitError(f"-o {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        ours = (out / schema.MANIFEST_NAME).is_file() or (out / WORK_DIR).is_dir()
        if not ours:
            raise DepthkitError(f"-o {out}: folder is not empty and holds no depthkit shards; "
                                "choose an empty or new folder")


# ----------------------------------------------------------------------------- shard files


def _tar_paths(out: Path, res: int, stem: str) -> tuple[Path, Path]:
    d = out / schema.res_dir(res)
    return d / f"{stem}.tar", d / f"{stem}.idx"


def _rel(out: Path, p: Path) -> str:
    return p.relative_to(out).as_posix()


def _shard_files_ok(out: Path, spec: ShardSpec, record: dict[str, Any],
                    resolutions: tuple[int, ...]) -> bool:
    """Whether a shard finished by an earlier run is still intact (sha256 and index)."""
    files = record.get("files", {})
    for res in resolutions:
        entry = files.get(str(res))
        if entry is None:
            return False
        if entry["samples"] == 0:
            continue
        tar, idx = _tar_paths(out, res, spec.name)
        try:
            if sha256_file(tar) != entry["sha256"]:
                return False
            if idx.read_text() != index_text(list_members(tar)):
                return False
        except (OSError, ValueError):
            return False
    return True


def _open_shard(out: Path, spec: ShardSpec, resolutions: tuple[int, ...]
                ) -> dict[int, AtomicTar]:
    """Temp tars (one per resolution) for one shard."""
    return {r: AtomicTar(*_tar_paths(out, r, spec.name)) for r in resolutions}


def _abort(writers: dict[int, AtomicTar] | None) -> None:
    for w in (writers or {}).values():
        w.abort()


def _commit_shard(out: Path, writers: dict[int, AtomicTar], written: int,
                  rejects: list[dict[str, str]]) -> dict[str, Any]:
    """Rename a shard's finished tars into place; return its journal entry."""
    files: dict[str, Any] = {}
    for r, w in writers.items():
        if written == 0:
            w.abort()
            files[str(r)] = {"samples": 0}
            continue
        info = w.commit()
        files[str(r)] = {"tar": _rel(out, w.tar_path), "index": _rel(out, w.idx_path),
                         "samples": info.samples, "bytes": info.bytes, "sha256": info.sha256}
    return {"files": files, "rejects": rejects}


def _finish_shard(out: Path, spec: ShardSpec, bucket: Path,
                  resolutions: tuple[int, ...]) -> dict[str, Any]:
    """Write one shard's tars (one per resolution) from its bucket; return its journal entry."""
    writers = _open_shard(out, spec, resolutions)
    rejects: list[dict[str, str]] = []
    written = 0
    try:
        if bucket.exists():
            for rec in iter_records(bucket, list(spec.keys)):
                if rec.header.get("reason") is not None:
                    rejects.append({"path": rec.header["path"], "reason": rec.header["reason"],
                                    "kind": rec.header["kind"]})
                    continue
                meta, *images = rec.blobs
                for i, r in enumerate(resolutions):
                    for name, data in sample_members(rec.key, rec.header["bg"], meta,
                                                     *images[3 * i: 3 * i + 3]):
                        writers[r].add(name, data)
                written += 1
        return _commit_shard(out, writers, written, rejects)
    except BaseException:
        _abort(writers)
        raise


def write_backgrounds(out: Path, source: Any, resolutions: tuple[int, ...], max_pixels: int,
                      on_reject: Callable[[str, str, str], None],
                      present: set[int] | None = None) -> tuple[list[int], dict]:
    """Check/resize every background into `<res>/backgrounds.tar`; return (ids, file entries).
    `present` (if given) collects every background id the source holds, usable or not."""
    writers = {r: AtomicTar(*_tar_paths(out, r, schema.BACKGROUNDS_STEM)) for r in resolutions}
    ids: list[int] = []
    try:
        for item in source.backgrounds():
            if _is_problem(item):
                on_reject(item.path, item.reason, "source")
                continue
            bg, data = item
            if present is not None:
                present.add(bg)
            try:
                outs = convert_background(bg, data, resolutions, max_pixels)
            except Rejected as err:
                on_reject(_bg_path(source, bg), str(err), err.kind)
                continue
            for r in resolutions:
                writers[r].add(f"{schema.bg_key(bg)}.{schema.EXT_BG}", outs[r])
            ids.append(bg)
        if not ids:
            raise DepthkitError("the source holds no usable background")
        entries = {}
        for r, w in writers.items():
            info = w.commit()
            entries[str(r)] = {"tar": _rel(out, w.tar_path), "index": _rel(out, w.idx_path),
                               "samples": info.samples, "bytes": info.bytes,
                               "sha256": info.sha256}
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    return ids, entries


def _bg_path(source: Any, bg: int) -> str:
    fn = getattr(source, "background_path", None)
    return str(fn(bg)) if fn is not None else f"background {bg}"


# ----------------------------------------------------------------------------- conversion


def start_pool(workers: int) -> ProcessPoolExecutor | None:
    """A process pool with its workers already forked (before any progress-bar thread
    starts; fork, unlike spawn, needs no `__main__` guard in the caller), or None for 0."""
    if workers <= 0:
        return None
    pool = ProcessPoolExecutor(workers, mp_context=get_context("fork"))
    for f in [pool.submit(int) for _ in range(workers)]:
        f.result()
    return pool


class _Converter:
    """Runs `convert_batch` inline (workers=0) or in a process pool, results in order."""

    def __init__(self, pool: ProcessPoolExecutor | None, workers: int,
                 resolutions: tuple[int, ...], max_pixels: int) -> None:
        self.args = (resolutions, max_pixels)
        self.pool = pool
        self.window = 2 * workers + 1

    def map(self, batches: Iterator[list[tuple[Any, Any]]]
            ) -> Iterator[tuple[list[tuple[Any, Any]], list[SampleResult] | None]]:
        """Yield (batch, results) in input order; at most `window` batches in flight."""
        if self.pool is None:
            for batch in batches:
                yield batch, self._inline(batch)
            return
        pending: deque[tuple[list, Future | None]] = deque()
        for batch in batches:
            jobs = [(s.key, s.fgbg, s.mask, s.depth) for s, _ in batch if s is not None]
            fut = self.pool.submit(convert_batch, jobs, *self.args) if jobs else None
            pending.append((batch, fut))
            if len(pending) >= self.window:
                b, f = pending.popleft()
                yield b, (f.result() if f is not None else [])
        while pending:
            b, f = pending.popleft()
            yield b, (f.result() if f is not None else [])

    def _inline(self, batch: list[tuple[Any, Any]]) -> list[SampleResult]:
        jobs = [(s.key, s.fgbg, s.mask, s.depth) for s, _ in batch if s is not None]
        return convert_batch(jobs, *self.args)


@dataclass
class _Run:
    """One shard run's fixed context: output, options, plan, and the journal it keeps."""

    out: Path
    cfg: ShardConfig
    resolutions: tuple[int, ...]
    plan: Plan
    journal: dict[str, Any]
    buckets: Buckets | None
    on_reject: Callable[[str, str, str], None]
    pool: ProcessPoolExecutor | None

    def checkpoint(self, todo: set[int]) -> None:
        """Flush the buckets and journal how far the conversion got (atomically)."""
        assert self.buckets is not None
        self.buckets.flush()
        self.journal["spill"]["sizes"] = {str(i): self.buckets.size(i) for i in sorted(todo)}
        _save_journal(self.out, self.journal)


def _spill(run: _Run, source: Any, subset_bgs: set[int] | None, todo: set[int],
           bg_ids: set[int]) -> None:
    """Stream the source once, converting and appending samples of `todo` shards to buckets."""
    plan, cfg, resolutions, buckets, on_reject = (run.plan, run.cfg, run.resolutions,
                                                  run.buckets, run.on_reject)
    assert buckets is not None
    spill = run.journal["spill"]
    skip = spill["consumed"]
    total = sum(len(plan.shards[i].keys) for i in todo)
    done_before = spill["spilled"]

    def batches() -> Iterator[list[tuple[Any, Any]]]:
        """Batches of (sample or None, item) in source order, after the consumed prefix."""
        batch: list[tuple[Any, Any]] = []
        for n, item in enumerate(_iter_samples(source, subset_bgs)):
            if n < skip:
                continue
            if _is_problem(item):
                batch.append((None, item))
            else:
                slot = plan.slot.get(item.key)
                wanted = slot is not None and slot[0] in todo
                batch.append((item if wanted and item.bg in bg_ids else None, item))
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    converter = _Converter(run.pool, cfg.workers, resolutions, cfg.max_pixels)
    last = time.monotonic()
    with progress_bar("shard", total=total, unit="samples", enabled=cfg.progress) as adv:
        adv(done_before)
        shown = done_before
        for batch, results in converter.map(batches()):
            res_iter = iter(results or [])
            for sample, item in batch:
                spill["consumed"] += 1
                if _is_problem(item):
                    on_reject(item.path, item.reason, "source")
                    continue
                slot = plan.slot.get(item.key)
                if slot is None or slot[0] not in todo:
                    continue
                spill["spilled"] += 1
                if sample is None:  # bg-less
                    reason = f"background {item.bg} missing or unusable"
                    on_reject(item.path, reason, "no-background")
                    rec = encode_record(item.key, {"path": item.path, "reason": reason,
                                                   "kind": "no-background"}, [])
                else:
                    r = next(res_iter)
                    if r.reason is not None:
                        on_reject(item.path, r.reason, r.kind or "invalid")
                        rec = encode_record(item.key, {"path": item.path, "reason": r.reason,
                                                       "kind": r.kind}, [])
                    else:
                        assert r.outputs is not None
                        blobs = [sample_meta(item)]
                        for res in resolutions:
                            f, m, d = r.outputs[res]
                            blobs += [item.fgbg if f is None else f,
                                      item.mask if m is None else m,
                                      item.depth if d is None else d]
                        rec = encode_record(item.key, {"bg": item.bg}, blobs)
                buckets.append(slot[0], rec)
            adv(spill["spilled"] - shown)
            shown = spill["spilled"]
            if time.monotonic() - last >= cfg.checkpoint_s:
                run.checkpoint(todo)
                last = time.monotonic()
    spill["complete"] = True
    run.checkpoint(todo)


# ----------------------------------------------------------------------------- direct path


def _random_access(source: Any) -> bool:
    """Whether the source reads any sample by its ref (folder, zip): then shards are written
    directly in planned order, with no spill."""
    return hasattr(source, "sample_refs") and hasattr(source, "reader")


def _plan_refs(source: Any, subset_bgs: set[int] | None, plan: Plan, present: set[int],
               usable: set[int], on_reject: Callable[[str, str, str], None],
               problems: list[dict[str, str]]) -> dict[str, Any]:
    """key -> SampleRef of every planned sample that can be converted (names only). Layout
    problems and samples without a usable background are rejected here, with the same
    reasons and kinds as the spill path gives them."""
    refs: dict[str, Any] = {}

    def reject(path: str, reason: str, kind: str) -> None:
        problems.append({"path": path, "reason": reason, "kind": kind})
        on_reject(path, reason, kind)

    for item in source.sample_refs(subset_bgs):
        if _is_problem(item):
            reject(item.path, item.reason, "source")
        elif item.bg not in present:  # as the layout reports it when streaming
            reject(item.path, f"background bg_final/{item.bg:03d}.jpg missing", "source")
        elif item.key not in plan.slot:
            continue
        elif item.bg not in usable:
            reject(item.path, f"background {item.bg} missing or unusable", "no-background")
        else:
            refs[item.key] = item
    return refs


@dataclass(frozen=True)
class _Task:
    """A batch of one shard's refs, in planned order; `last` closes the shard."""

    shard: int
    refs: list[Any]
    last: bool


def _direct_tasks(plan: Plan, todo: set[int], refs: dict[str, Any]) -> Iterator[_Task]:
    for i in sorted(todo):
        mine = [refs[k] for k in plan.shards[i].keys if k in refs]
        starts = range(0, len(mine), BATCH) if mine else [0]
        for start in starts:
            yield _Task(i, mine[start:start + BATCH], start + BATCH >= len(mine))


def _converted(run: _Run, reader: Any, tasks: Iterator[_Task]) -> Iterator[tuple[_Task, Part]]:
    """(task, Part) in task order: inline, or from the pool with a bounded window in flight."""
    args = (run.resolutions, run.cfg.max_pixels)
    if run.pool is None:
        for t in tasks:
            yield t, convert_refs(t.refs, reader, *args)
        return
    empty = Part({r: Fragment(b"", []) for r in run.resolutions}, 0, [])
    pending: deque[tuple[_Task, Future | None]] = deque()
    window = 2 * run.cfg.workers + 1
    for t in tasks:
        pending.append((t, run.pool.submit(convert_refs, t.refs, reader, *args)
                        if t.refs else None))
        if len(pending) >= window:
            t0, f = pending.popleft()
            yield t0, f.result() if f is not None else empty
    while pending:
        t0, f = pending.popleft()
        yield t0, f.result() if f is not None else empty


def _write_direct(run: _Run, source: Any, refs: dict[str, Any], todo: set[int]) -> None:
    """Write every `todo` shard once, straight from the source in planned order."""
    total = sum(1 for i in todo for k in run.plan.shards[i].keys if k in refs)
    reader = source.reader()
    writers: dict[int, AtomicTar] | None = None
    try:
        with progress_bar("shard", total=total, unit="samples",
                          enabled=run.cfg.progress) as adv:
            rejects: list[dict[str, str]] = []
            written = 0
            for task, part in _converted(run, reader, _direct_tasks(run.plan, todo, refs)):
                if writers is None:
                    writers = _open_shard(run.out, run.plan.shards[task.shard], run.resolutions)
                    rejects, written = [], 0
                for rej in part.rejects:
                    run.on_reject(rej["path"], rej["reason"], rej["kind"])
                rejects += part.rejects
                for r, w in writers.items():
                    w.add_fragment(part.fragments[r])
                written += part.samples
                if task.last:
                    entry = _commit_shard(run.out, writers, written, rejects)
                    writers = None
                    run.journal["done"][str(task.shard)] = entry
                    _save_journal(run.out, run.journal)
                adv(len(task.refs))
    except BaseException:
        _abort(writers)
        raise
    finally:
        reader.close()


# ----------------------------------------------------------------------------- the run


def _remove_strays(out: Path, resolutions: tuple[int, ...], keep: set[str]) -> None:
    """Delete shard files of ours (by name) that the new manifest does not list."""
    pat = re.compile(r"^(train|val)-\d{6}\.(tar|idx)$")
    for r in resolutions:
        d = out / schema.res_dir(r)
        for p in d.iterdir():
            if pat.match(p.name) and _rel(out, p) not in keep:
                p.unlink()


def write_shards(sources: Sequence[str | Path], cfg: ShardConfig) -> ShardSummary:
    """Shard a dataset in the original layout into `cfg.out` (see the module docstring)."""
    pool = start_pool(cfg.workers)  # forked before any progress-bar thread exists
    try:
        return _write_shards(sources, cfg, pool)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _write_shards(sources: Sequence[str | Path], cfg: ShardConfig,
                  pool: ProcessPoolExecutor | None) -> ShardSummary:
    t0 = time.monotonic()
    out = Path(cfg.out)
    sources = [Path(s) for s in sources]
    _check_out(out, sources)
    resolutions = tuple(sorted(set(cfg.resolutions)))

    def on_reject(path: str, reason: str, kind: str) -> None:
        if cfg.strict:
            raise DepthkitError(f"{path}: {reason} (--strict)")
        log.debug("rejected %s: %s", path, reason)

    with _open_source(sources) as source:
        pairs = list_planned_samples(source, cfg)
        plan = make_plan(pairs, cfg.split, cfg.shard_size)
        subset_bgs = {bg for _, bg in pairs} if cfg.bgs or cfg.limit else None
        fingerprint = _fingerprint(plan, cfg, resolutions, sources)
        out.mkdir(parents=True, exist_ok=True)
        (out / WORK_DIR).mkdir(exist_ok=True)
        for r in resolutions:
            (out / schema.res_dir(r)).mkdir(exist_ok=True)
            remove_stale_tmp(out / schema.res_dir(r))
        remove_stale_tmp(out)
        remove_stale_tmp(out / WORK_DIR)
        journal = _load_journal(out, fingerprint)

        bg_problems: list[dict[str, str]] = []

        def on_bg_reject(path: str, reason: str, kind: str) -> None:
            on_reject(path, reason, kind)
            bg_problems.append({"path": path, "reason": reason, "kind": kind})

        present: set[int] = set()
        bg_ids, bg_entries = write_backgrounds(out, source, resolutions, cfg.max_pixels,
                                               on_bg_reject, present)

        # Keep what an earlier run finished, if still intact.
        done: dict[str, Any] = {}
        for i_str, rec in journal["done"].items():
            if _shard_files_ok(out, plan.shards[int(i_str)], rec, resolutions):
                done[i_str] = rec
        kept = len(done)
        journal["done"] = done
        todo = {i for i in range(len(plan.shards)) if str(i) not in done}

        if _random_access(source):
            journal["spill"] = None
            problems: list[dict[str, str]] = []
            refs = _plan_refs(source, subset_bgs, plan, present, set(bg_ids), on_reject,
                              problems)
            run = _Run(out, cfg, resolutions, plan, journal, None, on_reject, pool)
            _write_direct(run, source, refs, todo)
            resumed = 0
        else:
            problems, resumed = _spill_path(out, cfg, resolutions, plan, journal, todo,
                                            source, subset_bgs, bg_ids, on_reject, pool)
    buckets_folder = out / WORK_DIR / "buckets"

    manifest, rejects = _manifest(out, plan, cfg, resolutions, sources, bg_ids, bg_entries,
                                  journal, bg_problems + problems, pool)
    write_atomic(out / schema.REJECTS_NAME, rejects.encode())
    write_atomic(out / schema.MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
    shutil.rmtree(buckets_folder, ignore_errors=True)
    listed = {e[k] for r in manifest["files"].values() for sp in schema.SPLITS
              for e in r[sp] for k in ("tar", "index")}
    _remove_strays(out, resolutions, listed)

    by_reason = manifest["rejects"]["by_reason"]
    total_bytes = sum(e["bytes"] for r in manifest["files"].values()
                      for e in [r["backgrounds"], *r["train"], *r["val"]])
    return ShardSummary(out, {s: manifest["counts"][s] for s in schema.SPLITS},
                        manifest["counts"]["rejected"], by_reason, total_bytes,
                        time.monotonic() - t0, kept, len(todo), resumed)


def _spill_path(out: Path, cfg: ShardConfig, resolutions: tuple[int, ...], plan: Plan,
                journal: dict[str, Any], todo: set[int], source: Any,
                subset_bgs: set[int] | None, bg_ids: list[int],
                on_reject: Callable[[str, str, str], None],
                pool: ProcessPoolExecutor | None) -> tuple[list[dict[str, str]], int]:
    """Sequential sources: spill every `todo` sample to its shard's bucket (resuming an
    interrupted spill), then write the shards from their buckets. Returns (source problems,
    samples an earlier run had spilled)."""
    buckets = Buckets(out / WORK_DIR / "buckets")
    spill = journal.get("spill")
    resumable = (spill is not None and todo <= set(spill["shards"])
                 and all(buckets.size(i) >= spill["sizes"].get(str(i), 0) for i in todo))
    if resumable:
        for i in todo:
            buckets.truncate(i, spill["sizes"].get(str(i), 0))
        for i in set(spill["shards"]) - todo:
            buckets.remove(i)
    else:
        shutil.rmtree(buckets.folder, ignore_errors=True)
        buckets.folder.mkdir(parents=True)
        journal["spill"] = {"shards": sorted(todo), "consumed": 0, "spilled": 0,
                            "sizes": {}, "complete": not todo, "problems": []}
    spill = journal["spill"]
    resumed = spill["spilled"]
    problems: list[dict[str, str]] = spill["problems"]

    def on_spill_reject(path: str, reason: str, kind: str) -> None:
        if kind == "source":
            problems.append({"path": path, "reason": reason, "kind": kind})
        on_reject(path, reason, kind)

    try:
        if not spill["complete"]:
            run = _Run(out, cfg, resolutions, plan, journal, buckets, on_spill_reject, pool)
            _spill(run, source, subset_bgs, todo, set(bg_ids))
    finally:
        buckets.close()

    with progress_bar("write", total=len(todo), unit="shards", enabled=cfg.progress) as adv:
        for i in sorted(todo):
            journal["done"][str(i)] = _finish_shard(out, plan.shards[i], buckets.path(i),
                                                    resolutions)
            _save_journal(out, journal)
            buckets.remove(i)
            adv(1)
    return problems, resumed


def _fingerprint(plan: Plan, cfg: ShardConfig, resolutions: tuple[int, ...],
                 sources: Sequence[Path]) -> str:
    h = hashlib.sha256(plan.fingerprint().encode())
    h.update(json.dumps({"res": resolutions, "max_pixels": cfg.max_pixels,
                         "src": [str(s.resolve()) for s in sources],
                         "format": schema.FORMAT_VERSION}).encode())
    return h.hexdigest()


def _manifest(out: Path, plan: Plan, cfg: ShardConfig, resolutions: tuple[int, ...],
              sources: Sequence[Path], bg_ids: list[int], bg_entries: dict[str, Any],
              journal: dict[str, Any], problems: list[dict[str, str]],
              pool: ProcessPoolExecutor | None) -> tuple[dict[str, Any], str]:
    """(manifest, rejects.jsonl text) from the journal of finished shards and the rejects
    outside them (`problems`; manifest structure in depthkit/manifest.py)."""
    files: dict[str, Any] = {}
    counts = {s: 0 for s in schema.SPLITS}
    for r in resolutions:
        files[str(r)] = {"backgrounds": bg_entries[str(r)], "train": [], "val": []}
    rejects = list(problems)
    for i, spec in enumerate(plan.shards):
        rec = journal["done"][str(i)]
        rejects += rec["rejects"]
        first = rec["files"][str(resolutions[0])]
        counts[spec.split] += first["samples"]
        for r in resolutions:
            entry = rec["files"][str(r)]
            if entry["samples"]:
                files[str(r)][spec.split].append(entry)
    uniq = sorted({(p["path"], p["reason"], p["kind"]) for p in rejects})
    lines = "".join(json.dumps({"path": p, "reason": r, "kind": k}) + "\n" for p, r, k in uniq)
    top = max(resolutions)
    stats, n_stats = channel_stats(out / files[str(top)]["backgrounds"]["tar"],
                                   [out / e["tar"] for e in files[str(top)]["train"]],
                                   cfg.stats_samples, pool)
    manifest = {
        "format": schema.FORMAT_NAME, "version": schema.FORMAT_VERSION,
        "depthkit_version": __version__,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": [str(s.resolve()) for s in sources],
        "resolutions": list(resolutions),
        "split": {"method": cfg.split.method, "val_fraction": cfg.split.val_fraction,
                  "seed": cfg.split.seed,
                  **({"val_backgrounds": list(plan.val_bgs)} if plan.val_bgs is not None
                     else {})},
        "subset": {"bgs": list(cfg.bgs) if cfg.bgs is not None else None, "limit": cfg.limit},
        "shard_size": cfg.shard_size,
        "counts": {**counts, "rejected": len(uniq)},
        "backgrounds": sorted(bg_ids),
        "stats": stats,
        "stats_info": {"res": top, "samples": n_stats, "backgrounds": len(bg_ids),
                       "note": "all backgrounds; the first samples of the shuffled train "
                               "shards; values on the [0, 1] scale, mask before threshold"},
        "files": files,
        "rejects": {"count": len(uniq), "by_reason": dict(sorted(Counter(
            k for _, _, k in uniq).items())), "file": schema.REJECTS_NAME},
    }
    return manifest, lines


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


def format_summary(s: ShardSummary) -> str:
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
