"""Reading the original layout from a folder, a zip and the .7z set: same samples, derived
fields, reported problems, hostile names, 7z ordering and streaming."""

from __future__ import annotations

import io
import os
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import py7zr
import pytest
from PIL import Image

from depthkit.core.errors import DepthkitError
from depthkit.source.folder import FolderSource
from depthkit.source.open import open_source
from depthkit.source.sample import Problem, Sample
from depthkit.source.sevenzip import SevenZipSource
from depthkit.source.zipsource import ZipSource
from depthkit.synth.dataset import SynthConfig, sample_paths, synthesize

ROLE_FOLDERS = {"bg.7z": "bg_final", "fgbg.7z": "fg_bg", "fgbgmask.7z": "fg_bg_mask",
                "Densedepth.7z": "Output"}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")
            and p.name != "synth.json"}


def _split(items: list) -> tuple[list[Sample], list[Problem]]:
    return ([x for x in items if isinstance(x, Sample)],
            [x for x in items if isinstance(x, Problem)])


def _read(source_paths, **kw) -> tuple[list[Sample], list[Problem]]:
    with open_source(source_paths, **kw) as src:
        return _split(list(src.samples()))


def _by_key(samples: list[Sample]) -> dict[str, tuple]:
    return {s.key: (s.bg, s.group, s.nnn, s.fg, s.flip, s.path, s.fgbg, s.mask, s.depth)
            for s in samples}


def _write_7z(out: Path, files: dict[str, bytes], prefix: bool,
              order=None, extra: dict[str, list[tuple[str, bytes]]] | None = None) -> Path:
    """The original archive set from a layout file dict; members optionally prefixed."""
    out.mkdir(parents=True, exist_ok=True)
    for name, folder in ROLE_FOLDERS.items():
        members = [(k.split("/", 1)[1], v) for k, v in files.items() if k.startswith(folder + "/")]
        if order is not None:
            members = order(name, members)
        with py7zr.SevenZipFile(out / name, "w") as sz:
            for rel, data in members:
                sz.writestr(data, f"{folder}/{rel}" if prefix else rel)
            for arcname, data in (extra or {}).get(name, []):
                sz._writestr(data, arcname)  # bypasses py7zr's own name check on purpose
    return out


def _jpeg(size: tuple[int, int], mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def files(synth_root: Path) -> dict[str, bytes]:
    return _files(synth_root)


@pytest.fixture(scope="module")
def folder_samples(synth_root: Path) -> list[Sample]:
    samples, problems = _read(synth_root)
    assert problems == []
    return samples


def test_folder_reads_every_sample_with_derived_fields(synth_root, synth_config, folder_samples):
    cfg = synth_config
    assert len(folder_samples) == cfg.samples == 24
    expected = {}
    for bg in range(1, cfg.bgs + 1):
        for fg in range(cfg.fgs):
            for flip in (False, True):
                for pos in range(cfg.positions):
                    fgbg, mask, depth = sample_paths(bg, fg, flip, pos, False)
                    expected[fgbg] = (bg, fg, flip)
    got = {s.path: (s.bg, s.fg, s.flip) for s in folder_samples}
    assert got == expected
    s = folder_samples[0]
    assert "." not in s.key and s.key == "b000001_g001_n001"
    assert s.fgbg == (synth_root / s.path).read_bytes()
    assert s.mask == (synth_root / s.path.replace("fg_bg/", "fg_bg_mask/")).read_bytes()
    with open_source(synth_root) as src:
        assert src.count() == len(src) == 24
        listed = list(src.keys())
        assert [k for k, _ in listed] == [s.key for s in folder_samples]
        bgs = list(src.backgrounds())
    assert [b for b, _ in bgs] == [1, 2]
    assert bgs[0][1] == (synth_root / "bg_final/001.jpg").read_bytes()


def test_zip_and_7z_give_the_same_samples(tmp_path, synth_root, files, folder_samples):
    want = _by_key(folder_samples)
    zpath = tmp_path / "school.zip"
    with zipfile.ZipFile(zpath, "w") as zf:  # with an extra leading folder, as zips often have
        for rel, data in files.items():
            zf.writestr(f"school/{rel}", data)
    zs, zp = _read(zpath)
    assert zp == [] and _by_key(zs) == want
    for prefix in (False, True):
        arch = _write_7z(tmp_path / f"7z-{prefix}", files, prefix)
        s7, p7 = _read(arch)  # the folder holding the archives
        assert p7 == [] and _by_key(s7) == want
        s7, p7 = _read([arch / n for n in ROLE_FOLDERS])  # the four files
        assert p7 == [] and _by_key(s7) == want


@pytest.mark.parametrize("archive", ["7z", "zip"])
def test_synth_archives_read_like_the_folder(tmp_path, synth_config, folder_samples, archive):
    cfg = SynthConfig(**{**synth_config.__dict__, "archive": archive})
    out = tmp_path / "a"
    synthesize(out, cfg, progress=False)
    with open_source(out) as src:
        assert isinstance(src, SevenZipSource if archive == "7z" else ZipSource)
        assert src.count() == cfg.samples
        samples, problems = _split(list(src.samples()))
    assert problems == []
    assert _by_key(samples) == _by_key(folder_samples)


def _copy(synth_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "school"
    shutil.copytree(synth_root, root)
    return root


def test_missing_corrupt_mismatched_and_stray_files_are_reported(tmp_path, synth_root):
    root = _copy(synth_root, tmp_path)
    (root / "fg_bg_mask/001/001/001.jpg").unlink()
    (root / "Output/001/001/002.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (root / "fg_bg_mask/001/001/021.jpg").write_bytes(_jpeg((32, 32)))
    (root / "fg_bg_mask/001/001/399.jpg").write_bytes(_jpeg((64, 64)))  # no fgbg for it
    (root / "fg_bg/001/002").mkdir()
    (root / "fg_bg/001/002/001.jpg").write_bytes(_jpeg((64, 64), "RGB"))  # group 002: invalid
    (root / "fg_bg/001/001/.001.jpg.tmp123").write_bytes(b"half")  # hidden temp: ignored
    samples, problems = _read(root)
    reasons = {p.path: p.reason for p in problems}
    assert reasons["fg_bg/001/001/001.jpg"] == "mask missing"
    assert reasons["fg_bg/001/001/002.jpg"].startswith("depth does not decode")
    assert reasons["fg_bg/001/001/021.jpg"] == "mask size 32x32 differs from fgbg 64x64"
    assert reasons["fg_bg_mask/001/001/399.jpg"] == "mask without fgbg"
    assert "001, 011, 021" in reasons["fg_bg/001/002/001.jpg"]
    assert len(problems) == 5
    assert len(samples) == 24 - 3
    assert not {s.path for s in samples} & set(reasons)
    # check=False skips decoding: the corrupt and mismatched samples come through
    with open_source(root) as src:
        unchecked, _ = _split(list(src.samples(check=False)))
    assert len(unchecked) == 24 - 1


def test_missing_or_corrupt_background_refuses_its_samples(tmp_path, synth_root):
    root = _copy(synth_root, tmp_path)
    (root / "bg_final/001.jpg").unlink()
    samples, problems = _read(root)
    assert {s.bg for s in samples} == {2} and len(samples) == 12
    assert len(problems) == 12
    assert all(p.reason == "background bg_final/001.jpg missing" for p in problems)
    (root / "bg_final/002.jpg").write_bytes(b"garbage")
    with open_source(root) as src:
        bgs = list(src.backgrounds())
        samples, problems = _split(list(src.samples()))
    assert samples == [] and len(problems) == 24
    assert any("does not decode" in p.reason for p in problems)
    assert [b for b, _ in bgs] == [2]


def test_hostile_zip_member_names_are_refused_and_reported(tmp_path, files):
    zpath = tmp_path / "evil.zip"
    some = files["fg_bg/001/001/001.jpg"]
    with zipfile.ZipFile(zpath, "w") as zf:
        for rel, data in files.items():
            zf.writestr(rel, data)
        for evil in ("../fg_bg/001/001/003.jpg", "/abs/fg_bg/001/001/004.jpg",
                     "fg_bg/../../fg_bg/001/001/005.jpg", "C:/fg_bg/001/001/006.jpg"):
            zf.writestr(evil, some)
    samples, problems = _read(zpath)
    assert len(samples) == 24
    assert sorted(p.path for p in problems) == sorted(
        ["../fg_bg/001/001/003.jpg", "/abs/fg_bg/001/001/004.jpg",
         "fg_bg/../../fg_bg/001/001/005.jpg", "C:/fg_bg/001/001/006.jpg"])
    assert all("refused" in p.reason for p in problems)


def test_hostile_7z_member_names_are_refused_and_reported(tmp_path, files):
    some = files["fg_bg/001/001/001.jpg"]
    arch = _write_7z(tmp_path / "evil", files, prefix=False,
                     extra={"fgbg.7z": [("../001/001/003.jpg", some), ("/etc/001/001/004.jpg",
                                                                           some)]})
    cwd = os.getcwd()
    samples, problems = _read(arch)
    assert len(samples) == 24
    assert sorted(p.path for p in problems) == ["fgbg.7z:../001/001/003.jpg",
                                                 "fgbg.7z:/etc/001/001/004.jpg"]
    assert all("refused" in p.reason for p in problems)
    assert os.getcwd() == cwd and not (tmp_path / "001").exists()


def test_symlink_out_of_the_folder_is_refused(tmp_path, synth_root):
    root = _copy(synth_root, tmp_path / "in")
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(_jpeg((64, 64)))
    target = root / "fg_bg_mask/001/001/001.jpg"
    target.unlink()
    target.symlink_to(outside)
    samples, problems = _read(root)
    reasons = {p.path: p.reason for p in problems}
    assert reasons["fg_bg_mask/001/001/001.jpg"] == "symlink pointing outside the source refused"
    assert reasons["fg_bg/001/001/001.jpg"] == "mask missing"
    assert len(samples) == 23


def test_7z_members_out_of_order_join_within_the_buffer(tmp_path, files, folder_samples):
    def reverse_masks(name, members):
        return members[::-1] if name == "fgbgmask.7z" else members

    arch = _write_7z(tmp_path / "rev", files, prefix=False, order=reverse_masks)
    samples, problems = _read(arch, buffer=100)
    assert problems == [] and _by_key(samples) == _by_key(folder_samples)
    with pytest.raises(DepthkitError, match="fgbgmask.7z stores members in another order"):
        open_source(arch, buffer=5)


def test_7z_member_missing_from_one_archive_is_reported(tmp_path, files):
    def drop_one(name, members):
        return [m for m in members if not (name == "Densedepth.7z" and m[0] == "002/001/041.jpg")]

    samples, problems = _read(_write_7z(tmp_path / "drop", files, prefix=True, order=drop_one))
    assert len(samples) == 23
    assert problems == [Problem("fg_bg/002/001/041.jpg", "depth missing")]


def test_7z_reader_stops_its_threads_when_closed_early(tmp_path, files):
    arch = _write_7z(tmp_path / "s", files, prefix=False)
    with open_source(arch) as src:
        it = src.samples()
        assert isinstance(next(it), Sample)
        it.close()
    alive = [t for t in threading.enumerate() if t.name.startswith("7z-") and t.is_alive()]
    assert alive == []


def test_corrupt_7z_is_a_one_line_error(tmp_path, files):
    arch = _write_7z(tmp_path / "c", files, prefix=False)
    data = (arch / "fgbgmask.7z").read_bytes()
    (arch / "fgbgmask.7z").write_bytes(data[:40] + bytes(len(data) - 40))
    with pytest.raises(DepthkitError) as err:
        _read(arch)
    assert "fgbgmask.7z" in str(err.value) and "\n" not in str(err.value)


def test_open_source_errors_name_the_problem(tmp_path, files):
    with pytest.raises(DepthkitError, match="source not found"):
        open_source(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DepthkitError, match="holds neither"):
        open_source(tmp_path / "empty")
    arch = _write_7z(tmp_path / "set", files, prefix=False)
    (arch / "fgbgmask.7z").unlink()
    with pytest.raises(DepthkitError, match="lacks fgbgmask.7z"):
        open_source(arch)
    odd = tmp_path / "stuff.7z"
    shutil.copy(arch / "fgbg.7z", odd)
    with pytest.raises(DepthkitError, match="cannot tell what"):
        open_source([odd, arch / "bg.7z"])


def test_samples_can_be_limited_to_some_backgrounds(synth_root, files, tmp_path):
    arch = _write_7z(tmp_path / "b", files, prefix=False)
    for src_path in (synth_root, arch):
        with open_source(src_path) as src:
            got, problems = _split(list(src.samples(bgs={2})))
        assert problems == [] and len(got) == 12 and {s.bg for s in got} == {2}


def test_folder_source_is_chosen_for_a_layout_folder(synth_root):
    with open_source(str(synth_root)) as src:
        assert isinstance(src, FolderSource)
    # the mask really is binary-ish JPEG and the depth single-channel, like the original
    s = next(x for x in FolderSource(synth_root).samples() if isinstance(x, Sample))
    assert Image.open(io.BytesIO(s.mask)).mode == "L"
    assert Image.open(io.BytesIO(s.depth)).mode == "L"
    assert np.asarray(Image.open(io.BytesIO(s.fgbg))).shape == (64, 64, 3)
