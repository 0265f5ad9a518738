"""The spill path, for sequential sources (the .7z set): stream the source once, converting in
the worker pool and appending each sample to its shard's bucket (`depthkit.shard.spill`), then
write each shard's tars from its bucket in planned order. The journal records how far the
spill got, so an interrupted run resumes it where it stopped."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from depthkit.core.diskspace import Needs, on_disk_full
from depthkit.core.pool import ordered_map
from depthkit.core.progress import progress_bar
from depthkit.shard import schema
from depthkit.shard.context import RunContext
from depthkit.shard.convert import SampleResult, convert_batch
from depthkit.shard.files import abort, commit_shard, journal_rate, open_shard
from depthkit.shard.journal import WORK_DIR, save_journal
from depthkit.shard.members import converted_images, sample_members, sample_meta
from depthkit.shard.plan import ShardSpec
from depthkit.shard.spill import Buckets, encode_record, iter_records
from depthkit.source import Problem, Sample, Source

SourceBatch = list[tuple[Sample | None, Sample | Problem]]  # (sample to convert or None, item)


def bucket_folder(out: Path) -> Path:
    """Where the spill keeps its buckets (removed once the manifest is written)."""
    return out / WORK_DIR / "buckets"


def write_spilled(run: RunContext, source: Source, usable: set[int], todo: set[int]
                  ) -> tuple[list[dict[str, str]], int]:
    """Spill every `todo` sample to its shard's bucket (resuming an interrupted spill), then
    write the shards from their buckets; `usable` are the background ids samples may use.
    Returns (source problems, samples an earlier run had spilled)."""
    buckets = Buckets(bucket_folder(run.out))
    spill = _start_spill(run.journal, buckets, todo)
    resumed = spill["spilled"]
    problems: list[dict[str, str]] = spill["problems"]

    def on_spill_reject(path: str, reason: str, kind: str) -> None:
        if kind == "source":
            problems.append({"path": path, "reason": reason, "kind": kind})
        run.on_reject(path, reason, kind)

    with on_disk_full(buckets.folder, _spill_needs(run, buckets, todo), resumes=True):
        try:
            if not spill["complete"]:
                _spill(replace(run, on_reject=on_spill_reject), buckets, source, todo, usable)
        finally:
            buckets.close()
    with on_disk_full(needs=_write_needs(run, buckets, todo), resumes=True), \
            progress_bar("write", total=len(todo), unit="shards",
                         enabled=run.cfg.progress) as adv:
        for i in sorted(todo):
            run.journal["done"][str(i)] = finish_shard(run.out, run.plan.shards[i],
                                                       buckets.path(i), run.resolutions)
            save_journal(run.out, run.journal)
            buckets.remove(i)
            adv(1)
    return problems, resumed


def _write_needs(run: RunContext, buckets: Buckets, todo: set[int]) -> Needs:
    """What writing shards from their buckets still writes, stopped by a full disk: tar bytes
    per sample of the shards done x samples left, else the buckets left (each is freed once
    its shard is written)."""

    def needs() -> int | None:
        left = [i for i in todo if str(i) not in run.journal["done"]]
        rate = journal_rate(run.journal)
        if rate is not None:
            return int(rate * sum(len(run.plan.shards[i].keys) for i in left))
        return sum(p.stat().st_size for i in left if (p := buckets.path(i)).exists())

    return needs


def _spill_needs(run: RunContext, buckets: Buckets, todo: set[int]) -> Needs:
    """What a spill stopped by a full disk still needs: bucket bytes per spilled sample x
    samples left to spill, plus one shard (its tars exist beside the buckets until the
    bucket is removed)."""

    def needs() -> int | None:
        spilled = run.journal["spill"]["spilled"]
        if not spilled:
            return None
        size = sum(p.stat().st_size for p in buckets.folder.glob("bucket-*.bin"))
        total = sum(len(run.plan.shards[i].keys) for i in todo)
        return int(size / spilled * (total - spilled + run.cfg.shard_size))

    return needs


def _start_spill(journal: dict[str, Any], buckets: Buckets, todo: set[int]) -> dict[str, Any]:
    """The journal's spill state: the interrupted one (buckets cut back to their journaled
    lengths) if it covers every `todo` shard, else a fresh one with empty buckets."""
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
    return journal["spill"]


def _checkpoint(run: RunContext, buckets: Buckets, todo: set[int]) -> None:
    """Flush the buckets and journal how far the conversion got (atomically)."""
    buckets.flush()
    run.journal["spill"]["sizes"] = {str(i): buckets.size(i) for i in sorted(todo)}
    save_journal(run.out, run.journal)


def _spill(run: RunContext, buckets: Buckets, source: Source, todo: set[int],
           usable: set[int]) -> None:
    """Stream the source once, converting and appending samples of `todo` shards to buckets."""
    spill = run.journal["spill"]
    total = sum(len(run.plan.shards[i].keys) for i in todo)
    args = (run.resolutions, run.cfg.max_pixels)
    tasks = ((batch, (jobs, *args) if (jobs := _jobs(batch)) else None)
             for batch in _source_batches(run, source, todo, usable, spill["consumed"]))
    last = time.monotonic()
    with progress_bar("shard", total=total, unit="samples", enabled=run.cfg.progress) as adv:
        adv(spill["spilled"])
        shown = spill["spilled"]
        for batch, results in ordered_map(run.pool, run.cfg.workers, convert_batch, tasks, []):
            _spill_batch(run, buckets, todo, batch, results)
            adv(spill["spilled"] - shown)
            shown = spill["spilled"]
            if time.monotonic() - last >= run.cfg.checkpoint_s:
                _checkpoint(run, buckets, todo)
                last = time.monotonic()
    spill["complete"] = True
    _checkpoint(run, buckets, todo)


def _source_batches(run: RunContext, source: Source, todo: set[int], usable: set[int],
                    skip: int) -> Iterator[SourceBatch]:
    """Batches of (sample to convert or None, item) in source order, after the first `skip`
    items (those an interrupted run consumed already)."""
    batch: SourceBatch = []
    for n, item in enumerate(source.samples(check=False, bgs=run.subset_bgs)):
        if n < skip:
            continue
        if isinstance(item, Problem):
            batch.append((None, item))
        else:
            slot = run.plan.slot.get(item.key)
            wanted = slot is not None and slot[0] in todo
            batch.append((item if wanted and item.bg in usable else None, item))
        if len(batch) >= run.cfg.batch:
            yield batch
            batch = []
    if batch:
        yield batch


def _jobs(batch: SourceBatch) -> list[tuple[str, bytes, bytes, bytes]]:
    """`convert_batch`'s input: the batch's samples to convert, as (key, fgbg, mask, depth)."""
    return [(s.key, s.fgbg, s.mask, s.depth) for s, _ in batch if s is not None]


def _spill_batch(run: RunContext, buckets: Buckets, todo: set[int], batch: SourceBatch,
                 results: list[SampleResult]) -> None:
    """Append each planned item of a converted batch to its shard's bucket."""
    spill = run.journal["spill"]
    res_iter = iter(results)
    for sample, item in batch:
        spill["consumed"] += 1
        if isinstance(item, Problem):
            run.on_reject(item.path, item.reason, "source")
            continue
        slot = run.plan.slot.get(item.key)
        if slot is None or slot[0] not in todo:
            continue
        spill["spilled"] += 1
        result = None if sample is None else next(res_iter)
        buckets.append(slot[0], _record(run, item, result))


def _record(run: RunContext, item: Sample, result: SampleResult | None) -> bytes:
    """The bucket record of one planned sample: its converted components, or why not
    (`result` None: the sample has no usable background)."""
    if result is None:
        reason = f"background {item.bg} missing or unusable"
        run.on_reject(item.path, reason, "no-background")
        return encode_record(item.key, {"path": item.path, "reason": reason,
                                        "kind": "no-background"}, [])
    if result.reason is not None:
        run.on_reject(item.path, result.reason, result.kind or "invalid")
        return encode_record(item.key, {"path": item.path, "reason": result.reason,
                                        "kind": result.kind}, [])
    assert result.outputs is not None
    blobs = [sample_meta(item)]
    for res in run.resolutions:
        blobs += converted_images(item, result.outputs[res])
    return encode_record(item.key, {"bg": item.bg}, blobs)


def finish_shard(out: Path, spec: ShardSpec, bucket: Path,
                 resolutions: tuple[int, ...]) -> dict[str, Any]:
    """Write one shard's tars (one per resolution) from its bucket; return its journal entry."""
    writers = open_shard(out, spec, resolutions)
    n_images = len(schema.IMAGE_FIELDS)
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
                    members = sample_members(rec.key, rec.header["bg"], meta,
                                             images[n_images * i: n_images * (i + 1)])
                    for name, data in members:
                        writers[r].add(name, data)
                written += 1
        return commit_shard(out, writers, written, rejects)
    except BaseException:
        abort(writers)
        raise
