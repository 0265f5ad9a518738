"""`depthkit shard` on a disk that fills up: a one-line DiskFullError naming the tar (or the
spill buckets) with the free space and what the run still needs, no temp file left, a journal
a rerun resumes from, and once space is freed the same files as a run that never failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from depthkit.core.atomic import is_tmp_name
from depthkit.core.diskspace import DiskFullError
from depthkit.shard import ShardConfig, ShardSummary, run, schema, write_shards
from depthkit.shard.journal import journal_path
from depthkit.shard.verify import verify_shards


def shard(src: Path, out: Path) -> ShardSummary:
    return write_shards([src], ShardConfig(out=out, resolutions=(32, 64), shard_size=4,
                                           workers=0, progress=False, checkpoint_s=0, batch=4))


def tar_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.suffix in (".tar", ".idx")}


def needs_bytes(text: str) -> float:
    """The 'needs about N kB more' figure of a message, in bytes."""
    figure, unit = text.split("needs about ")[1].split(" more")[0].split()
    return float(figure) * {"B": 1, "kB": 1e3, "MB": 1e6}[unit]


@pytest.mark.parametrize(("spill", "fill"), [(False, 0.5), (True, 0.25), (True, 0.6)])
def test_full_disk_stops_in_one_line_and_the_rerun_finishes(synth_root, tmp_path, monkeypatch,
                                                            small_disk, spill, fill):
    """Direct path half way; spill path while spilling (0.25 of the tars' size) and while
    writing shards from the buckets (0.6: the buckets fit, buckets + tars do not)."""
    if spill:
        monkeypatch.setattr(run, "is_random_access", lambda source: False)
    ref = tmp_path / "ref"
    shard(synth_root, ref)
    total = sum(len(b) for b in tar_files(ref).values())
    out = tmp_path / "disk" / "out"
    disk = small_disk(tmp_path / "disk", int(total * fill))
    with pytest.raises(DiskFullError) as caught:
        shard(synth_root, out)
    text = str(caught.value)
    assert text.startswith(f"disk full writing {out}/") and "\n" not in text
    assert " free, this run needs about " in text
    assert text.endswith("free space and rerun the same command (it resumes)")
    assert [p for p in out.rglob("*") if is_tmp_name(p.name)] == []
    assert not (out / schema.MANIFEST_NAME).exists()
    done = json.loads(journal_path(out).read_text())["done"] if journal_path(out).exists() \
        else {}
    spilling = spill and fill < 0.5
    assert ("buckets" in text) == spilling
    assert bool(done) != spilling  # shards finished before the disk filled are journaled
    if not spill:  # the estimate is roughly the rest
        kept = sum(len(b) for name, b in tar_files(out).items() if "backgrounds" not in name)
        assert 0.5 < needs_bytes(text) / (total - kept) < 2
    disk.undo()
    summary = shard(synth_root, out)
    assert summary.shards_kept == len(done)
    assert (summary.resumed > 0) == spill  # the spill is not redone from the start
    assert tar_files(out) == tar_files(ref)
    assert verify_shards(out, progress=False).ok
