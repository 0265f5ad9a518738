"""The direct path, for random-access sources (folder, zip): each shard is written once,
straight from the source in planned order. Worker processes read batches of samples by their
refs, decode-check and convert them (`members.convert_refs`) and return tar fragments, which
this process appends to the shard's tars."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeGuard

from depthkit.core.diskspace import SpaceUse, on_disk_full
from depthkit.core.pool import ordered_map
from depthkit.core.progress import progress_bar
from depthkit.shard.context import RunContext
from depthkit.shard.files import Backgrounds, abort, commit_shard, journal_rate, open_shard
from depthkit.shard.journal import save_journal
from depthkit.shard.members import Part, convert_refs
from depthkit.shard.tario import AtomicTar, Fragment
from depthkit.source import IndexedSource, Problem, SampleRef, Source


def is_random_access(source: Source) -> TypeGuard[IndexedSource]:
    """Whether the source reads any sample by its ref (folder, zip): then shards are written
    directly in planned order, with no spill."""
    return isinstance(source, IndexedSource)


def plan_refs(run: RunContext, source: IndexedSource, bgs: Backgrounds
              ) -> tuple[dict[str, SampleRef], list[dict[str, str]]]:
    """(key -> ref of every planned sample that can be converted, rejects) from names only.
    Layout problems and samples without a usable background are rejected here, with the same
    reasons and kinds as the spill path gives them."""
    refs: dict[str, SampleRef] = {}
    problems: list[dict[str, str]] = []
    usable = set(bgs.ids)

    def reject(path: str, reason: str, kind: str) -> None:
        problems.append({"path": path, "reason": reason, "kind": kind})
        run.on_reject(path, reason, kind)

    for item in source.sample_refs(run.subset_bgs):
        if isinstance(item, Problem):
            reject(item.path, item.reason, "source")
        elif item.bg not in bgs.present:  # as the layout reports it when streaming
            reject(item.path, f"background bg_final/{item.bg:03d}.jpg missing", "source")
        elif item.key not in run.plan.slot:
            continue
        elif item.bg not in usable:
            reject(item.path, f"background {item.bg} missing or unusable", "no-background")
        else:
            refs[item.key] = item
    return refs, problems


@dataclass(frozen=True)
class RefBatch:
    """A batch of one shard's refs, in planned order; `last` closes the shard."""

    shard: int
    refs: list[SampleRef]
    last: bool


def _ref_batches(run: RunContext, todo: set[int], refs: dict[str, SampleRef]
                 ) -> Iterator[RefBatch]:
    size = run.cfg.batch
    for i in sorted(todo):
        mine = [refs[k] for k in run.plan.shards[i].keys if k in refs]
        starts = range(0, len(mine), size) if mine else [0]
        for start in starts:
            yield RefBatch(i, mine[start:start + size], start + size >= len(mine))


def write_direct(run: RunContext, source: IndexedSource, refs: dict[str, SampleRef],
                 todo: set[int]) -> None:
    """Write every `todo` shard once, straight from the source in planned order."""
    total = sum(1 for i in todo for k in run.plan.shards[i].keys if k in refs)
    use = SpaceUse(total, journal_rate(run.journal))
    reader = source.reader()
    args = (reader, run.resolutions, run.cfg.max_pixels)
    tasks = ((b, (b.refs, *args) if b.refs else None) for b in _ref_batches(run, todo, refs))
    empty = Part({r: Fragment(b"", []) for r in run.resolutions}, 0, [])
    writers: dict[int, AtomicTar] | None = None
    try:
        with on_disk_full(needs=use.needs, resumes=True), \
                progress_bar("shard", total=total, unit="samples",
                             enabled=run.cfg.progress) as adv:
            rejects: list[dict[str, str]] = []
            written = 0
            for batch, part in ordered_map(run.pool, run.cfg.workers, convert_refs, tasks,
                                           empty):
                if writers is None:
                    writers = open_shard(run.out, run.plan.shards[batch.shard], run.resolutions)
                    rejects, written = [], 0
                for rej in part.rejects:
                    run.on_reject(rej["path"], rej["reason"], rej["kind"])
                rejects += part.rejects
                for r, w in writers.items():
                    w.add_fragment(part.fragments[r])
                    use.bytes += len(part.fragments[r].data)
                written += part.samples
                use.items += part.samples
                if batch.last:
                    entry = commit_shard(run.out, writers, written, rejects)
                    writers = None
                    use.kept += written
                    run.journal["done"][str(batch.shard)] = entry
                    save_journal(run.out, run.journal)
                adv(len(batch.refs))
    except BaseException:
        abort(writers)
        raise
    finally:
        reader.close()
