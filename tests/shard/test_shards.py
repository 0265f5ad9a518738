"""Tests of `depthkit shard`: conversion checks, whole runs (fake and real sources), restart
after failures and kills, the direct and spill paths, interop with tar/webdataset/DALI."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthkit.core.errors import DepthkitError
from depthkit.shard import (
    ShardConfig,
    ShardSummary,
    parse_int_list,
    run,
    schema,
    spill_path,
    write_shards,
)
from depthkit.shard.convert import Rejected, convert_sample, decode_checked
from depthkit.shard.manifest import load_manifest, split_files
from depthkit.shard.spill import Buckets
from depthkit.shard.verify import verify_shards
from depthkit.source import Problem, Source

# ----------------------------------------------------------------------------- tiny data


def jpeg(a: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def noise(rng: np.random.Generator, size: int, channels: int) -> np.ndarray:
    shape = (size, size, channels) if channels > 1 else (size, size)
    return rng.integers(0, 256, shape, dtype=np.uint8)


@dataclass(frozen=True)
class FakeSample:
    """Same fields as depthkit.source.Sample."""

    key: str
    bg: int
    group: int
    nnn: int
    fg: int
    flip: bool
    path: str
    fgbg: bytes
    mask: bytes
    depth: bytes


def fake_sample(rng: np.random.Generator, bg: int, nnn: int, size: int = 32,
                **override: bytes) -> FakeSample:
    parts = {"fgbg": jpeg(noise(rng, size, 3)), "mask": jpeg(noise(rng, size, 1)),
             "depth": jpeg(noise(rng, size, 1), quality=75)}
    parts.update(override)
    return FakeSample(schema.sample_key(bg, 1, nnn), bg, 1, nnn, (nnn - 1) // 40,
                      (nnn - 1) % 40 >= 20, f"fg_bg/{bg:03d}/001/{nnn:03d}.jpg", **parts)


class FakeSource(Source):
    """An in-memory stand-in for a sequential layout Source (the methods write_shards calls)."""

    def __init__(self, backgrounds: dict[int, bytes], items: list) -> None:
        self.bgs, self.items = backgrounds, items

    def keys(self) -> list[tuple[str, int]]:
        return [(s.key, s.bg) for s in self.items if isinstance(s, FakeSample)]

    def backgrounds(self):
        yield from self.bgs.items()

    def samples(self, *, check: bool = True, bgs=None):
        # bgs only lets a real reader skip work; conversion follows the plan either way
        yield from self.items


def fake_dataset(n_bg: int = 3, per_bg: int = 8, size: int = 32, seed: int = 0
                 ) -> tuple[dict[int, bytes], list]:
    rng = np.random.default_rng(seed)
    bgs = {b: jpeg(noise(rng, size, 3)) for b in range(1, n_bg + 1)}
    items = [fake_sample(rng, b, n, size) for b in bgs for n in range(1, per_bg + 1)]
    return bgs, items


@pytest.fixture
def use_fake(monkeypatch):
    """Make `write_shards` read a FakeSource: call the returned function with (bgs, items)."""

    def install(bgs: dict[int, bytes], items: list) -> None:
        monkeypatch.setattr(run, "open_source", lambda paths: FakeSource(bgs, items))

    return install


def cfg(out: Path, **kw) -> ShardConfig:
    base = {"out": out, "resolutions": (32,), "shard_size": 5, "workers": 0, "progress": False}
    return ShardConfig(**{**base, **kw})


def manifest_without_time(root: Path) -> dict:
    m = json.loads((root / schema.MANIFEST_NAME).read_text())
    m.pop("created")
    return m


def all_files(root: Path) -> dict[str, bytes]:
    """Every visible output file (relative path -> bytes), manifest without its timestamp."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith("."):
            out[rel] = p.read_bytes()
    out[schema.MANIFEST_NAME] = json.dumps(manifest_without_time(root)).encode()
    return out


# ----------------------------------------------------------------------------- conversion


def png_bomb_header(w: int, h: int) -> bytes:
    """A small PNG whose header claims w x h gray pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


def test_convert_copies_matching_jpeg_bytes_and_resizes_others():
    rng = np.random.default_rng(0)
    s = fake_sample(rng, 1, 1, size=32, mask=png(noise(rng, 32, 1)))
    r = convert_sample(s.key, s.fgbg, s.mask, s.depth, (16, 32))
    assert r.reason is None and r.outputs is not None
    f32, m32, d32 = r.outputs[32]
    assert f32 is None and d32 is None  # already 32 px JPEG: copied unchanged
    assert m32 is not None and Image.open(io.BytesIO(m32)).format == "JPEG"  # PNG -> JPEG
    for data in r.outputs[16]:
        assert data is not None
        im = Image.open(io.BytesIO(data))
        assert (im.format, im.size) == ("JPEG", (16, 16))


@pytest.mark.parametrize(("part", "make", "kind"), [
    ("fgbg", lambda rng, good: b"", "empty"),
    ("mask", lambda rng, good: good[: len(good) // 2], "undecodable"),
    ("depth", lambda rng, good: b"not an image at all", "undecodable"),
    ("fgbg", lambda rng, good: jpeg(noise(rng, 32, 1)), "channels"),
    ("mask", lambda rng, good: jpeg(noise(rng, 32, 3)), "channels"),
    ("mask", lambda rng, good: jpeg(noise(rng, 24, 1)), "size"),
    ("depth", lambda rng, good: jpeg(noise(rng, 20, 1)), "size"),
    ("mask", lambda rng, good: png_bomb_header(100_000, 100_000), "too-large"),
    ("depth", lambda rng, good: png_bomb_header(5000, 5000), "too-large"),
])
def test_convert_rejects_bad_images(part, make, kind):
    rng = np.random.default_rng(1)
    good = fake_sample(rng, 1, 1)
    bad = make(rng, getattr(good, part))
    parts = {"fgbg": good.fgbg, "mask": good.mask, "depth": good.depth, part: bad}
    r = convert_sample(good.key, parts["fgbg"], parts["mask"], parts["depth"], (32,))
    assert r.outputs is None and r.kind == kind, r.reason


def test_convert_accepts_the_original_one_pixel_depth_quirk():
    rng = np.random.default_rng(2)
    s = fake_sample(rng, 1, 1, size=223, depth=jpeg(noise(rng, 224, 1)))
    r = convert_sample(s.key, s.fgbg, s.mask, s.depth, (224,))
    assert r.reason is None and r.outputs is not None
    assert all(d is not None for d in r.outputs[224][:2]) and r.outputs[224][2] is None


def test_pixel_guard_refuses_before_decoding():
    rng = np.random.default_rng(3)
    with pytest.raises(Rejected, match="exceeds"):
        decode_checked(jpeg(noise(rng, 32, 3)), "fgbg", "RGB", (32,), max_pixels=1000)


# ----------------------------------------------------------------------------- shard runs


def test_shard_fake_source_verifies_and_is_reproducible(tmp_path, use_fake):
    use_fake(*fake_dataset())
    s1 = write_shards([tmp_path / "src"], cfg(tmp_path / "a", resolutions=(32, 16)))
    s2 = write_shards([tmp_path / "src"], cfg(tmp_path / "b", resolutions=(16, 32),
                                                     workers=2))
    assert s1.counts == s2.counts == {"train": 22, "val": 2} and s1.rejected == 0
    a, b = all_files(tmp_path / "a"), all_files(tmp_path / "b")
    a.pop(schema.MANIFEST_NAME), b.pop(schema.MANIFEST_NAME)
    assert a == b  # workers and argument order change nothing
    assert manifest_without_time(tmp_path / "a")["files"] == \
        manifest_without_time(tmp_path / "b")["files"]
    report = verify_shards(tmp_path / "a", progress=False)
    assert report.ok, report.problems
    m = load_manifest(tmp_path / "a")
    assert m["resolutions"] == [16, 32] and m["backgrounds"] == [1, 2, 3]
    assert sum(e["samples"] for e in split_files(m, 16, "train")) == 22


def test_bad_samples_are_skipped_and_reported(tmp_path, use_fake):
    rng = np.random.default_rng(5)
    bgs, items = fake_dataset(n_bg=2, per_bg=6)
    bad = [
        fake_sample(rng, 1, 31, fgbg=b""),  # zero-byte
        fake_sample(rng, 1, 32, mask=items[0].mask[:200]),  # truncated
        fake_sample(rng, 1, 33, depth=b"\xff\xd8garbage"),  # corrupt
        fake_sample(rng, 2, 34, mask=jpeg(noise(rng, 16, 1))),  # mismatched size
        fake_sample(rng, 2, 35, fgbg=jpeg(noise(rng, 32, 1))),  # wrong channels
        fake_sample(rng, 9, 36),  # bg 9 has no background
        Problem("fg_bg/002/001/099.jpg", "no mask file"),  # refused by the reader
    ]
    use_fake(bgs, items + bad)
    summary = write_shards([tmp_path / "src"], cfg(tmp_path / "out"))
    assert summary.written == 12 and summary.rejected == 7
    lines = [json.loads(x) for x in (tmp_path / "out/rejects.jsonl").read_text().splitlines()]
    assert sorted(r["path"] for r in lines) == sorted(s.path for s in bad)
    kinds = {r["path"]: r["kind"] for r in lines}
    assert kinds[bad[0].path] == "empty" and kinds[bad[3].path] == "size"
    assert kinds[bad[4].path] == "channels" and kinds[bad[5].path] == "no-background"
    m = load_manifest(tmp_path / "out")
    assert m["counts"]["rejected"] == 7 and sum(m["rejects"]["by_reason"].values()) == 7
    assert verify_shards(tmp_path / "out", progress=False).ok


def test_strict_stops_at_the_first_bad_sample(tmp_path, use_fake):
    rng = np.random.default_rng(6)
    bgs, items = fake_dataset(n_bg=1, per_bg=3)
    use_fake(bgs, items + [fake_sample(rng, 1, 9, depth=b"")])
    with pytest.raises(DepthkitError, match=r"fg_bg/001/001/009\.jpg: depth: empty file"):
        write_shards([tmp_path / "src"], cfg(tmp_path / "out", strict=True))
    assert not (tmp_path / "out" / schema.MANIFEST_NAME).exists()


def test_subsets_by_background_and_limit(tmp_path, use_fake):
    use_fake(*fake_dataset(n_bg=4, per_bg=5))
    s = write_shards([tmp_path / "src"], cfg(tmp_path / "a", bgs=(2, 4)))
    keys = _keys(tmp_path / "a", 32)
    assert s.written == 10 and {int(k[1:7]) for k in keys} == {2, 4}
    s = write_shards([tmp_path / "src"], cfg(tmp_path / "b", limit=7))
    assert s.written == 7 and _keys(tmp_path / "b", 32) == sorted(
        schema.sample_key(b, 1, n) for b in range(1, 5) for n in range(1, 6))[:7]
    with pytest.raises(DepthkitError, match="--bgs"):
        write_shards([tmp_path / "src"], cfg(tmp_path / "c", bgs=(7,)))


def _keys(root: Path, res: int) -> list[str]:
    m = load_manifest(root)
    out = []
    for split in schema.SPLITS:
        for e in split_files(m, res, split):
            with tarfile.open(root / e["tar"]) as tar:
                out += sorted({n.name.split(".")[0] for n in tar})
    return sorted(out)


def test_refuses_a_foreign_non_empty_output_folder(tmp_path, use_fake):
    use_fake(*fake_dataset(n_bg=1, per_bg=2))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    with pytest.raises(DepthkitError, match="not empty"):
        write_shards([tmp_path / "src"], cfg(tmp_path / "home"))
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["notes.txt"]


def test_a_folder_holding_only_a_placeholder_is_empty_and_keeps_it(tmp_path, use_fake):
    use_fake(*fake_dataset(n_bg=1, per_bg=2))
    out = tmp_path / "shards"
    out.mkdir()
    (out / "README.md").write_text("Shard output folder (git-ignored).\n")
    write_shards([tmp_path / "src"], cfg(out))
    assert (out / schema.MANIFEST_NAME).is_file()
    assert (out / "README.md").read_text() == "Shard output folder (git-ignored).\n"
    (tmp_path / "other").mkdir()
    for name in ("README.md", "notes.txt"):
        (tmp_path / "other" / name).write_text("mine")
    with pytest.raises(DepthkitError, match="not empty"):  # a placeholder and more: not ours
        write_shards([tmp_path / "src"], cfg(tmp_path / "other"))


def test_rerun_after_failure_after_k_shards_keeps_them_and_matches(tmp_path, use_fake,
                                                                   monkeypatch):
    use_fake(*fake_dataset(n_bg=3, per_bg=10))
    write_shards([tmp_path / "src"], cfg(tmp_path / "ref"))
    real = spill_path.finish_shard
    calls = []

    def failing(*args, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if killed while writing the third shard
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(spill_path, "finish_shard", failing)
    with pytest.raises(KeyboardInterrupt):
        write_shards([tmp_path / "src"], cfg(tmp_path / "out"))
    monkeypatch.setattr(spill_path, "finish_shard", real)
    assert not (tmp_path / "out" / schema.MANIFEST_NAME).exists()
    summary = write_shards([tmp_path / "src"], cfg(tmp_path / "out"))
    assert summary.shards_kept == 2 and summary.shards_written == 5
    assert all_files(tmp_path / "out") == all_files(tmp_path / "ref")
    # a damaged finished shard is noticed on the next run and rewritten
    tar = tmp_path / "out/32/train-000001.tar"
    tar.write_bytes(tar.read_bytes()[:-1] + b"!")
    summary = write_shards([tmp_path / "src"], cfg(tmp_path / "out"))
    assert summary.shards_kept == 6 and summary.shards_written == 1
    assert all_files(tmp_path / "out") == all_files(tmp_path / "ref")


def test_rerun_after_interrupted_conversion_resumes(tmp_path, use_fake, monkeypatch):
    use_fake(*fake_dataset(n_bg=3, per_bg=20))
    write_shards([tmp_path / "src"], cfg(tmp_path / "ref", checkpoint_s=0))
    real = Buckets.append
    seen = []

    def failing(self, shard, record):
        if len(seen) == 45:
            raise KeyboardInterrupt
        seen.append(1)
        real(self, shard, record)

    monkeypatch.setattr(Buckets, "append", failing)
    with pytest.raises(KeyboardInterrupt):
        write_shards([tmp_path / "src"], cfg(tmp_path / "out", checkpoint_s=0))
    monkeypatch.setattr(Buckets, "append", real)
    journal = json.loads((tmp_path / "out/.work/journal.json").read_text())
    assert 0 < journal["spill"]["consumed"] < 60
    summary = write_shards([tmp_path / "src"], cfg(tmp_path / "out", checkpoint_s=0))
    assert summary.resumed > 0
    assert all_files(tmp_path / "out") == all_files(tmp_path / "ref")


def test_other_arguments_start_afresh_and_remove_stale_shards(tmp_path, use_fake):
    use_fake(*fake_dataset(n_bg=3, per_bg=10))
    write_shards([tmp_path / "src"], cfg(tmp_path / "out", shard_size=4))
    assert (tmp_path / "out/32/train-000006.tar").exists()
    write_shards([tmp_path / "src"], cfg(tmp_path / "out", shard_size=10))
    write_shards([tmp_path / "src"], cfg(tmp_path / "ref", shard_size=10))
    assert not (tmp_path / "out/32/train-000006.tar").exists()
    assert all_files(tmp_path / "out") == all_files(tmp_path / "ref")


def test_cli_parses_lists_with_one_line_errors():
    assert parse_int_list("64, 128,224", "--res") == (64, 128, 224)
    with pytest.raises(DepthkitError, match="--res"):
        parse_int_list("64,big", "--res")


# ----------------------------------------------------------------------------- real layout

CLI = [sys.executable, "-m", "depthkit"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300)


def _shard_real(src: Path, out: Path, **kw) -> ShardSummary:
    base = {"out": out, "resolutions": (64,), "shard_size": 8, "workers": 0, "progress": False}
    return write_shards([src], ShardConfig(**{**base, **kw}))


def test_synth_shard_verify_by_cli_and_bytes_are_copied(synth_root, tmp_path):
    out = tmp_path / "out"
    r = run_cli("shard", synth_root, "-o", out, "--res", "32,64", "--shard-size", "8",
                "--workers", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "wrote 22 train + 2 val samples" in r.stdout and "rejected 0" in r.stdout
    r = run_cli("verify", "-s", out, "--quiet")
    assert r.returncode == 0 and r.stdout.startswith("OK "), r.stdout + r.stderr
    assert len(r.stdout.strip().splitlines()) == 1
    m = load_manifest(out)
    # at the source's own size (64 px JPEG) every image is the source file, byte for byte
    source_bytes = 0
    members = 0
    for split in schema.SPLITS:
        for e in split_files(m, 64, split):
            with tarfile.open(out / e["tar"]) as tar:
                for info in tar:
                    members += 1
                    key, ext = info.name.split(".", 1)
                    if ext in (schema.EXT_FGBG, schema.EXT_MASK, schema.EXT_DEPTH):
                        meta = json.loads(tar.extractfile(f"{key}.meta.json").read())
                        folder = {schema.EXT_FGBG: "fg_bg", schema.EXT_MASK: "fg_bg_mask",
                                  schema.EXT_DEPTH: "Output"}[ext]
                        src = synth_root / meta["src"].replace("fg_bg", folder, 1)
                        assert tar.extractfile(info).read() == src.read_bytes()
                        source_bytes += src.stat().st_size
    bg_bytes = sum(p.stat().st_size for p in (synth_root / "bg_final").iterdir())
    files = [m["files"]["64"]["backgrounds"], *m["files"]["64"]["train"], *m["files"]["64"]["val"]]
    total = sum(e["bytes"] for e in files)
    # tar overhead: a 512-byte header and < 512 bytes padding per member, 1024-10240 at the end
    overhead = (members + len(m["backgrounds"])) * (512 + 256) + len(files) * 5632
    expected = source_bytes + bg_bytes + overhead
    assert abs(total - expected) / expected < 0.05, (total, expected)
    with tarfile.open(out / m["files"]["64"]["backgrounds"]["tar"]) as tar:
        assert sorted(tar.getnames()) == [f"{schema.bg_key(b)}.jpg" for b in m["backgrounds"]]


def _tar_contents(out: Path, res: int) -> dict[str, dict[str, bytes]]:
    """key -> {ext: bytes} of every sample of one resolution, via tarfile."""
    m = load_manifest(out)
    got: dict[str, dict[str, bytes]] = {}
    for split in schema.SPLITS:
        for e in split_files(m, res, split):
            with tarfile.open(out / e["tar"]) as tar:
                for info in tar:
                    key, ext = info.name.split(".", 1)
                    got.setdefault(key, {})[ext] = tar.extractfile(info).read()
    return got


def test_shards_read_back_with_tar_and_webdataset(shard_root, tmp_path):
    want = _tar_contents(shard_root, 64)
    assert len(want) == 24
    m = load_manifest(shard_root)
    tars = [str(shard_root / e["tar"]) for s in schema.SPLITS for e in split_files(m, 64, s)]
    # plain tar
    dest = tmp_path / "x"
    dest.mkdir()
    for t in tars:
        subprocess.run(["tar", "-xf", t, "-C", str(dest)], check=True)
    by_tar = {}
    for p in dest.iterdir():
        key, ext = p.name.split(".", 1)
        by_tar.setdefault(key, {})[ext] = p.read_bytes()
    assert by_tar == want
    # webdataset
    wds = pytest.importorskip("webdataset")
    got = {}
    for sample in wds.WebDataset(tars, shardshuffle=False, empty_check=False):
        got[sample["__key__"]] = {k: v for k, v in sample.items() if not k.startswith("__")}
    assert got == want


def test_shards_read_back_with_dali_and_our_index_files(shard_root):
    pytest.importorskip("nvidia.dali")
    from nvidia.dali import fn, pipeline_def

    want = _tar_contents(shard_root, 64)
    m = load_manifest(shard_root)
    entries = [e for s in schema.SPLITS for e in split_files(m, 64, s)]
    exts = list(schema.SAMPLE_EXTS)

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        return tuple(fn.readers.webdataset(
            paths=[str(shard_root / e["tar"]) for e in entries],
            index_paths=[str(shard_root / e["index"]) for e in entries],
            ext=exts, missing_component_behavior="error", random_shuffle=False,
            name="reader"))

    p = pipe()
    p.build()
    n = p.epoch_size("reader")
    assert n == 24
    got = {}
    for _ in range(n):
        outs = [np.array(o[0]).tobytes() for o in p.run()]
        parts = dict(zip(exts, outs, strict=True))
        meta = json.loads(parts[schema.EXT_META])
        got[schema.sample_key(meta["bg"], meta["group"], meta["nnn"])] = parts
    assert got == want


def test_bad_files_in_a_real_folder_are_skipped_and_named(synth_root, tmp_path):
    import shutil

    src = tmp_path / "school"
    shutil.copytree(synth_root, src)
    fgbg = sorted((src / "fg_bg").rglob("*.jpg"))
    fgbg[0].write_bytes(b"")  # zero-byte
    mask = src / "fg_bg_mask" / fgbg[1].relative_to(src / "fg_bg")
    mask.write_bytes(mask.read_bytes()[:300])  # truncated
    depth = src / "Output" / fgbg[2].relative_to(src / "fg_bg")
    depth.write_bytes(jpeg(np.zeros((64, 64, 3), np.uint8)))  # wrong channels
    summary = _shard_real(src, tmp_path / "out")
    assert summary.written == 21 and summary.rejected == 3
    rejects = (tmp_path / "out/rejects.jsonl").read_text()
    for f in fgbg[:3]:
        assert f.relative_to(src).as_posix() in rejects
    assert verify_shards(tmp_path / "out", progress=False).ok
    r = run_cli("shard", src, "-o", tmp_path / "strict", "--strict", "--quiet", "--workers", "0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: fg_bg/") and "Traceback" not in r.stderr


def test_hostile_member_names_never_write_outside_out(synth_root, tmp_path):
    import zipfile

    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(synth_root.rglob("*")):
            if p.is_file() and p.suffix == ".jpg":
                z.write(p, p.relative_to(synth_root).as_posix())
        data = (synth_root / "bg_final").iterdir().__next__().read_bytes()
        for name in ("../evil.jpg", "/tmp/evil_abs.jpg", "fg_bg/../../escape.jpg",
                     "fg_bg/001/001/../../../../up.jpg"):
            z.writestr(zipfile.ZipInfo(name), data)
    before = sorted(p for p in tmp_path.parent.rglob("*") if "out" not in p.parts)
    summary = _shard_real(zpath, tmp_path / "out")
    after = sorted(p for p in tmp_path.parent.rglob("*") if "out" not in p.parts)
    assert before == after and not Path("/tmp/evil_abs.jpg").exists()
    assert summary.written == 24 and summary.rejected >= 4
    assert verify_shards(tmp_path / "out", progress=False).ok


KILLER = """
import os, signal, sys
from pathlib import Path
from depthkit.shard import ShardConfig, direct, run, spill_path, write_shards
from depthkit.shard.spill import Buckets
from depthkit.shard.tario import AtomicTar
target, k = sys.argv[3], int(sys.argv[4])
calls = [0]
def hooked(real):
    def hook(*a):
        if calls[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)
        calls[0] += 1
        return real(*a)
    return hook
if target == "append":  # the spill path (sequential sources), forced on this folder
    run.is_random_access = lambda source: False
    Buckets.append = hooked(Buckets.append)
elif target == "fragment":  # the direct path, in the middle of a shard
    AtomicTar.add_fragment = hooked(AtomicTar.add_fragment)
else:  # either path, just before a shard is committed
    direct.commit_shard = hooked(direct.commit_shard)
    spill_path.commit_shard = hooked(spill_path.commit_shard)
write_shards([Path(sys.argv[1])], ShardConfig(
    out=Path(sys.argv[2]), resolutions=(32, 64), shard_size=4, workers=0, progress=False,
    checkpoint_s=0, batch=4))  # batch 4: several conversion checkpoints even in 24 samples
"""


@pytest.mark.parametrize(("target", "k", "kept"),
                         [("append", 13, 0), ("fragment", 5, 2), ("finish", 2, 2)])
def test_killed_run_reruns_to_identical_output(synth_root, tmp_path, monkeypatch, target, k,
                                               kept):
    if target == "append":
        monkeypatch.setattr(run, "is_random_access", lambda source: False)

    def shard(out: Path) -> ShardSummary:
        return write_shards([synth_root], ShardConfig(
            out=out, resolutions=(32, 64), shard_size=4, workers=0, progress=False))

    shard(tmp_path / "ref")
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    r = subprocess.run([sys.executable, str(script), str(synth_root), str(tmp_path / "out"),
                        target, str(k)], capture_output=True, text=True, timeout=300)
    assert r.returncode == -9, r.stderr  # really killed, no cleanup ran
    assert not (tmp_path / "out" / schema.MANIFEST_NAME).exists()
    summary = shard(tmp_path / "out")
    if target == "append":
        assert summary.resumed > 0
    assert summary.shards_kept == kept
    assert all_files(tmp_path / "out") == all_files(tmp_path / "ref")
    leftovers = [p for p in (tmp_path / "out").rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_direct_and_spill_paths_and_worker_counts_give_identical_files(synth_root, tmp_path,
                                                                      monkeypatch):
    """Folders and zips are written directly (no spill), sequential sources via the spill:
    same bytes, rejects and manifest either way, inline or with 2 workers."""
    import shutil
    import zipfile

    src = tmp_path / "school"
    shutil.copytree(synth_root, src)
    fgbg = sorted((src / "fg_bg").rglob("*.jpg"))
    fgbg[0].write_bytes(fgbg[0].read_bytes()[:-400])  # truncated entropy stream
    (src / "fg_bg_mask" / fgbg[1].relative_to(src / "fg_bg")).unlink()  # mask missing
    zpath = tmp_path / "school.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(src.rglob("*.jpg")):
            z.write(p, p.relative_to(src).as_posix())

    def files(source: Path, out: str, workers: int) -> dict[str, bytes]:
        write_shards([source], ShardConfig(
            out=tmp_path / out, resolutions=(32, 64), shard_size=5, workers=workers,
            progress=False))
        got = all_files(tmp_path / out)
        m = json.loads(got.pop(schema.MANIFEST_NAME))
        m.pop("source")
        return {**got, schema.MANIFEST_NAME: json.dumps(m).encode()}

    direct = files(src, "direct", 0)
    rejects = direct[schema.REJECTS_NAME].decode()
    assert len(rejects.splitlines()) == 2
    assert fgbg[0].relative_to(src).as_posix() in rejects and "mask missing" in rejects
    assert files(src, "direct2", 2) == direct
    assert files(zpath, "zip2", 2) == direct
    monkeypatch.setattr(run, "is_random_access", lambda source: False)
    assert files(src, "spill", 0) == direct
    assert files(src, "spill2", 2) == direct
