"""The cheap pre-flight of a split's shard files, finding a damaged sample, and --verify."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from depthkit.core.errors import DepthkitError
from depthkit.shard.manifest import load_manifest
from depthkit.shard.preflight import (
    check_split_files,
    find_bad_sample,
    read_index,
    verify_first,
)

RES = 32
TAR = f"{RES}/train-000001.tar"  # 7 samples (tests/conftest.py: 8 + 7 + 7 train)
IDX = f"{RES}/train-000001.idx"


@pytest.fixture
def shards(shard_root: Path, tmp_path: Path) -> Path:
    """A writable copy of the shared tiny shards."""
    out = tmp_path / "shards"
    shutil.copytree(shard_root, out)
    return out


def overwrite(path: Path, offset: int, data: bytes) -> None:
    """Overwrite bytes in place: the file keeps its size."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def member(shards: Path, sample: int, ext: str):
    """(key, Member) of one component of one sample of TAR, from its index."""
    m = next(m for m in read_index(shards / IDX, shards)[sample] if m.ext == ext)
    return m.name.split(".")[0], m


def span(shards: Path) -> tuple[list[tuple[str, str]], tuple[int, int]]:
    """The train files of RES as the loader reads them, and a span covering every sample."""
    entries = load_manifest(shards)["files"][str(RES)]["train"]
    return [(str(shards / e["tar"]), str(shards / e["index"])) for e in entries], (0, 10**6)


def test_intact_shards_pass(shard_root: Path) -> None:
    manifest = load_manifest(shard_root)
    for res in (32, 64):
        for split in ("train", "val"):
            check_split_files(shard_root, manifest, res, split)
    files, whole = span(shard_root)
    assert find_bad_sample(shard_root, files, whole, frozenset({1, 2})) is None
    verify_first(shard_root, progress=False)


def test_truncated_tar_is_named(shards: Path) -> None:
    tar = shards / TAR
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    with pytest.raises(DepthkitError, match=r"train-000001\.tar: .*the manifest says") as err:
        check_split_files(shards, load_manifest(shards), RES, "train")
    assert f"depthkit verify -s {shards}" in str(err.value) and "\n" not in str(err.value)


def test_member_past_the_end_is_caught_without_recorded_sizes(shards: Path) -> None:
    """The cut that made DALI segfault: the last bgid starts inside the file, ends past it."""
    manifest = json.loads((shards / "manifest.json").read_text())
    for e in manifest["files"][str(RES)]["train"]:
        del e["bytes"]
    (shards / "manifest.json").write_text(json.dumps(manifest))
    key, m = member(shards, -1, "bgid")
    tar = shards / TAR
    tar.write_bytes(tar.read_bytes()[: m.offset + 2])
    with pytest.raises(DepthkitError, match=rf"train-000001\.tar \(sample {key}\): member "
                                            rf"{key}\.bgid .* lies outside the file"):
        check_split_files(shards, load_manifest(shards), RES, "train")


@pytest.mark.parametrize("edit, needle", [
    (lambda t: t.replace("v1.2", "v9", 1), "not a v1.2 DALI index"),
    (lambda t: t.replace(" 512 ", " x ", 1), "malformed line 2"),
    (lambda t: "\n".join(t.splitlines()[:-1]) + "\n", "lists 6 samples, its header says 7"),
    (lambda t: t.replace(" bgid ", " bgix ", 1), "lists no bgid member"),
])
def test_damaged_index_is_named(shards: Path, edit, needle: str) -> None:
    idx = shards / IDX
    idx.write_text(edit(idx.read_text()))
    with pytest.raises(DepthkitError, match=r"train-000001\.(idx|tar)") as err:
        check_split_files(shards, load_manifest(shards), RES, "train")
    assert needle in str(err.value)


def test_missing_index_is_named(shards: Path) -> None:
    (shards / IDX).unlink()
    with pytest.raises(DepthkitError, match=r"missing shard file .*train-000001\.idx"):
        check_split_files(shards, load_manifest(shards), RES, "train")


def test_truncated_backgrounds_tar_is_named(shards: Path) -> None:
    bgs = shards / f"{RES}/backgrounds.tar"
    bgs.write_bytes(bgs.read_bytes()[:1000])
    with pytest.raises(DepthkitError, match=r"backgrounds\.tar: 1,000 bytes"):
        check_split_files(shards, load_manifest(shards), RES, "val")


@pytest.mark.parametrize("ext, where, needle", [
    ("fgbg.jpg", 0, "is not a readable image"),  # the JPEG's start
    ("mask.jpg", -512, "the tar header of"),  # the member's tar header
    ("bgid", 0, "background id -1 is not in backgrounds.tar"),
])
def test_find_bad_sample_names_tar_and_key(shards: Path, ext: str, where: int,
                                           needle: str) -> None:
    key, m = member(shards, 3, ext)
    overwrite(shards / TAR, m.offset + where, b"\xff" * 16)
    files, whole = span(shards)
    err = find_bad_sample(shards, files, whole, frozenset({1, 2}))
    assert err is not None
    assert f"train-000001.tar (sample {key})" in str(err) and needle in str(err)
    assert find_bad_sample(shards, files, (0, 8), frozenset({1, 2})) is None  # first tar only


def test_verify_first_catches_a_flipped_byte(shards: Path) -> None:
    _, m = member(shards, 3, "meta.json")  # a byte the loader never reads
    data = bytearray((shards / TAR).read_bytes())
    data[m.offset + 5] ^= 0x01
    (shards / TAR).write_bytes(bytes(data))
    check_split_files(shards, load_manifest(shards), RES, "train")  # the cheap check passes
    with pytest.raises(DepthkitError, match=r"--verify: .*train-000001\.tar.*depthkit verify"):
        verify_first(shards, progress=False)
