"""Tests of what `depthkit shard` picks and says by itself: the source's own resolution as the
default of --res, the --res checks, and a rerun's summary (this run's rate, folders of
resolutions no longer asked for removed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from depthkit.core.errors import DepthkitError
from depthkit.shard import (
    ShardConfig,
    ShardSummary,
    format_shard_summary,
    native,
    run,
    schema,
    write_shards,
)
from depthkit.shard.manifest import load_manifest, split_files
from depthkit.shard.verify import verify_shards
from depthkit.synth.dataset import SynthConfig, synthesize

CLI = [sys.executable, "-m", "depthkit"]


def shard(src: Path, out: Path, **kw) -> ShardSummary:
    base = {"out": out, "shard_size": 8, "workers": 0, "progress": False}
    return write_shards([src], ShardConfig(**{**base, **kw}))


def res_folders(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


def shard_files(out: Path) -> dict[str, str]:
    """sha256 of every tar the manifest lists."""
    m = load_manifest(out)
    return {e["tar"]: e["sha256"] for r in m["resolutions"] for s in schema.SPLITS
            for e in split_files(m, r, s)}


def test_default_res_is_the_sources_own_size_and_bytes_are_copied(synth_root, tmp_path):
    out = tmp_path / "s"
    r = subprocess.run([*CLI, "shard", str(synth_root), "-o", str(out), "--shard-size", "8",
                        "--workers", "0", "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert res_folders(out) == ["64"] and load_manifest(out)["resolutions"] == [64]
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"wrote 22 train \+ 2 val samples to .*/ \(.* MB\) in [\d.]+ s, "
                        r"converting at [\d,]+ samples/s", lines[0]), lines
    assert "resolutions: 64 px (the source's own size; --res to change)" in lines
    assert any(re.fullmatch(r"val backgrounds: [12](, 2)? \([12] of 2; random split.*", x)
               for x in lines), lines
    m = load_manifest(out)
    with tarfile.open(out / split_files(m, 64, "train")[0]["tar"]) as tar:
        for info in tar:
            key, ext = info.name.split(".", 1)
            if ext == schema.EXT_FGBG:  # at its own size, the source file byte for byte
                meta = json.loads(tar.extractfile(f"{key}.meta.json").read())
                assert tar.extractfile(info).read() == (synth_root / meta["src"]).read_bytes()


def test_default_res_on_a_sequential_source_skips_unreadable_samples(synth_root, tmp_path,
                                                                    monkeypatch):
    src = tmp_path / "school"
    shutil.copytree(synth_root, src)
    sorted((src / "fg_bg").rglob("*.jpg"))[0].write_bytes(b"")  # the first sample is bad
    monkeypatch.setattr(run, "is_random_access", lambda source: False)  # as for the .7z set
    monkeypatch.setattr(native, "is_random_access", lambda source: False)
    s = shard(src, tmp_path / "auto")
    assert s.resolutions == (64,) and s.native_res and s.rejected == 1
    assert shard_files(tmp_path / "auto") == shard_files(shard(src, tmp_path / "given",
                                                               resolutions=(64,)).out)


def test_res_must_be_a_positive_multiple_of_16(synth_root, tmp_path):
    for bad in (65, 8, 0, -16):
        with pytest.raises(DepthkitError, match=f"^--res {bad}: must be a positive multiple "
                                                "of 16$"):
            ShardConfig(resolutions=(32, bad))
    r = subprocess.run([*CLI, "shard", str(synth_root), "-o", str(tmp_path / "s"), "--res",
                        "65"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --res 65: must be a positive multiple of 16"], r.stderr
    assert not (tmp_path / "s").exists()
    odd = tmp_path / "odd"
    synthesize(odd, SynthConfig(bgs=1, fgs=1, positions=1, res=40), workers=1, progress=False)
    with pytest.raises(DepthkitError, match="images are 40 px, not a multiple of 16.*--res"):
        shard(odd, tmp_path / "o")


def test_rerun_summary_counts_only_this_runs_work(synth_root, tmp_path):
    out = tmp_path / "s"
    first = shard(synth_root, out, resolutions=(64,))
    assert first.converted == 24 and first.kept_samples == 0
    assert "converted by this run" not in format_shard_summary(first)
    again = shard(synth_root, out, resolutions=(64,))
    assert again.shards_kept == 4 and again.kept_samples == 24
    assert again.converted == 0 and again.rate == 0
    assert ", 0 converted by this run (24 kept from an earlier one), converting at 0 samples/s" in \
        format_shard_summary(again).splitlines()[0]
    tar = out / "64" / "train-000001.tar"
    redo = load_manifest(out)["files"]["64"]["train"][1]["samples"]
    tar.unlink()
    partial = shard(synth_root, out, resolutions=(64,))
    assert partial.shards_written == 1 and partial.kept_samples == 24 - redo
    assert partial.converted == redo
    assert 0 < partial.convert_seconds < partial.seconds  # the bar's clock, not the whole run
    assert partial.rate == partial.converted / partial.convert_seconds


def test_rerun_with_other_res_removes_the_old_folder(synth_root, tmp_path):
    out = tmp_path / "s"
    shard(synth_root, out, resolutions=(32, 64))
    (out / "128").mkdir()
    (out / "128" / "notes.txt").write_text("mine")  # not depthkit's: left alone
    s = shard(synth_root, out, resolutions=(64,))
    assert res_folders(out) == ["128", "64"] and s.removed == ("32/",)
    assert "removed 32/ (not asked for this time)" in format_shard_summary(s).splitlines()
    assert (out / "128" / "notes.txt").read_text() == "mine"
    assert verify_shards(out, progress=False).ok
    assert shard_files(out) == shard_files(shard(synth_root, tmp_path / "ref",
                                                 resolutions=(64,)).out)


def test_summary_names_the_first_val_backgrounds_and_their_count():
    s = ShardSummary(Path("s"), {"train": 90, "val": 10}, 0, {}, 10**6, 1.0, 0, 1,
                     resolutions=(64, 224), split="by-bg", val_bgs=tuple(range(3, 15)),
                     backgrounds=100)
    lines = format_shard_summary(s).splitlines()
    assert "resolutions: 64, 224 px" in lines
    assert "val backgrounds: 3, 4, 5, 6, 7, 8, 9, 10, ... (12 of 100; held out whole, " \
           "--split by-bg)" in lines
