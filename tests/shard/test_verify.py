"""Tests of `depthkit verify`: a sound folder passes; each kind of damage is found and named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from depthkit.core.errors import DepthkitError
from depthkit.shard import schema
from depthkit.shard.tario import iter_tar, sha256_file, write_tar
from depthkit.shard.verify import verify_shards


@pytest.fixture
def shards_copy(shard_root: Path, tmp_path: Path) -> Path:
    out = tmp_path / "shards"
    shutil.copytree(shard_root, out)
    return out


def _manifest(root: Path) -> dict:
    return json.loads((root / schema.MANIFEST_NAME).read_text())


def _save(root: Path, m: dict) -> None:
    (root / schema.MANIFEST_NAME).write_text(json.dumps(m, indent=2))


def _rewrite(root: Path, entry: dict, change) -> None:
    """Rewrite one tar through change(name, data) -> (name, data) | None and make the
    manifest agree (sha, bytes), so only the sample-level check can fail."""
    tar = root / entry["tar"]
    items = [x for x in (change(n, d) for n, d in iter_tar(tar)) if x is not None]
    info = write_tar(tar, root / entry["index"], items)
    m = _manifest(root)
    for res in m["files"].values():
        for e in [res["backgrounds"], *res["train"], *res["val"]]:
            if e["tar"] == entry["tar"]:
                e.update(bytes=info.bytes, sha256=info.sha256)
    _save(root, m)


def _problems(root: Path) -> list[str]:
    return verify_shards(root, progress=False).problems


def test_sound_folder_passes_by_cli(shard_root):
    assert _problems(shard_root) == []
    r = subprocess.run([sys.executable, "-m", "depthkit", "verify", "-s", str(shard_root),
                        "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("OK ") and r.stderr == ""


def test_flipped_byte_fails_by_cli_with_the_file_named(shards_copy):
    entry = _manifest(shards_copy)["files"]["64"]["train"][1]
    tar = shards_copy / entry["tar"]
    data = bytearray(tar.read_bytes())
    data[600] ^= 0xFF  # inside the first member's data
    tar.write_bytes(bytes(data))
    r = subprocess.run([sys.executable, "-m", "depthkit", "verify", "-s", str(shards_copy),
                        "--quiet", "--workers", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert f"{entry['tar']}: sha256 differs from the manifest" in r.stderr
    assert "FAILED" in r.stderr


def test_missing_tar_and_index(shards_copy):
    m = _manifest(shards_copy)
    (shards_copy / m["files"]["32"]["val"][0]["tar"]).unlink()
    (shards_copy / m["files"]["64"]["train"][0]["index"]).unlink()
    problems = _problems(shards_copy)
    assert any(p == f"{m['files']['32']['val'][0]['tar']}: missing" for p in problems)
    assert any(p.startswith(m["files"]["64"]["train"][0]["index"]) for p in problems)


def test_index_that_disagrees_with_its_tar(shards_copy):
    entry = _manifest(shards_copy)["files"]["64"]["train"][0]
    idx = shards_copy / entry["index"]
    lines = idx.read_text().splitlines()
    lines[1] = lines[1].replace(" 512 ", " 1024 ", 1)
    idx.write_text("\n".join(lines) + "\n")
    assert _problems(shards_copy) == [f"{entry['index']}: does not match the members of "
                                      f"{entry['tar']}"]


def test_counts_that_disagree_with_the_manifest(shards_copy):
    m = _manifest(shards_copy)
    m["files"]["64"]["train"][0]["samples"] += 1
    m["counts"]["val"] += 1
    _save(shards_copy, m)
    problems = _problems(shards_copy)
    assert any("samples, manifest says" in p for p in problems)
    assert any("val samples, manifest counts say 3" in p for p in problems)


def test_sample_level_damage_is_found(shards_copy):
    entry = _manifest(shards_copy)["files"]["64"]["train"][2]
    victims: list[str] = []

    def change(name: str, data: bytes):
        key, ext = name.split(".", 1)
        if not victims:
            victims.append(key)
        if key == victims[0] and ext == schema.EXT_MASK:
            return None  # incomplete sample
        if key == victims[0] and ext == schema.EXT_BGID:
            return name, schema.encode_bgid(999)  # bg id that does not resolve
        if ext == schema.EXT_DEPTH and len(victims) == 1 and key != victims[0]:
            victims.append(key)
            return name, data[: len(data) // 2]  # truncated image
        return name, data

    _rewrite(shards_copy, entry, change)
    problems = _problems(shards_copy)
    first, second = victims
    assert f"{entry['tar']}: {first}: missing ['{schema.EXT_MASK}'], unexpected -" in problems
    assert f"{entry['tar']}: {first}: bg id 999 not in backgrounds.tar" in problems
    assert any(p.startswith(f"{entry['tar']}: {second}: depth: cannot decode") for p in problems)
    assert len(problems) == 3, problems


def test_a_sample_dropped_at_one_resolution(shards_copy):
    entry = _manifest(shards_copy)["files"]["64"]["train"][0]
    dropped: list[str] = []

    def change(name: str, data: bytes):
        key = name.split(".", 1)[0]
        if not dropped or key == dropped[0]:
            dropped[:1] = [key]
            return None
        return name, data

    _rewrite(shards_copy, entry, change)
    problems = _problems(shards_copy)
    assert f"{Path(entry['tar']).name}: holds different samples at different resolutions" \
        in problems
    assert any(p.startswith(f"{entry['tar']}: ") and "manifest says" in p for p in problems)


def test_background_damage_is_found(shards_copy):
    entry = _manifest(shards_copy)["files"]["32"]["backgrounds"]
    dropped: list[str] = []

    def change(name: str, data: bytes):
        if not dropped:
            dropped.append(name)
            return None
        return name, data

    _rewrite(shards_copy, entry, change)
    problems = _problems(shards_copy)
    assert f"{entry['tar']}: background ids differ from the manifest's list" in problems
    bg = int(dropped[0][2:8])
    assert any(p.endswith(f"bg id {bg} not in backgrounds.tar") and p.startswith("32/")
               for p in problems)
    assert sha256_file(shards_copy / entry["tar"]) == _manifest(shards_copy)["files"]["32"][
        "backgrounds"]["sha256"]


def test_not_a_shard_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(DepthkitError, match="no manifest.json"):
        verify_shards(tmp_path, progress=False)
    r = subprocess.run([sys.executable, "-m", "depthkit", "verify", "-s", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("error: shard folder not found")
