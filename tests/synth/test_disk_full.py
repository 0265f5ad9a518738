"""`depthkit synth` on a disk that fills up: a one-line DiskFullError naming the file or the
archive, no temp file left; a folder rerun after freeing space resumes to the same bytes."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from depthkit.core.atomic import is_tmp_name
from depthkit.core.diskspace import DiskFullError
from depthkit.synth.dataset import SynthConfig, synthesize


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def size(root: Path) -> int:
    return sum(len(b) for b in files(root).values())


def test_folder_stops_in_one_line_and_the_rerun_resumes(synth_root, synth_config, tmp_path,
                                                        small_disk):
    out = tmp_path / "disk" / "school"
    disk = small_disk(tmp_path / "disk", size(synth_root) // 2)
    with pytest.raises(DiskFullError) as caught:
        synthesize(out, synth_config, workers=1, progress=False)
    text = str(caught.value)
    assert text.startswith(f"disk full writing {out}/") and "\n" not in text
    assert " free, this run needs about " in text
    assert text.endswith("(it resumes)")
    assert [p for p in out.rglob("*") if is_tmp_name(p.name)] == []
    disk.undo()
    again = synthesize(out, synth_config, workers=1, progress=False)
    assert again.skipped > 0  # what was written before the disk filled is kept
    assert files(out) == files(synth_root)


def test_zip_stops_in_one_line_without_a_temp_archive(tmp_path, small_disk):
    cfg = SynthConfig(bgs=2, fgs=2, positions=2, res=64, archive="zip")
    whole = synthesize(tmp_path / "ref", cfg, workers=1, progress=False).outputs[0]
    out = tmp_path / "disk" / "zipped"
    disk = small_disk(tmp_path / "disk", whole.stat().st_size // 2)
    with pytest.raises(DiskFullError) as caught:
        synthesize(out, cfg, workers=1, progress=False)
    text = str(caught.value)
    assert text.startswith(f"disk full writing {out / 'dataset.zip'}: ")
    assert text.endswith("free space and rerun")  # an archive is rewritten, not resumed
    assert sorted(p.name for p in out.iterdir()) == ["synth.json"]
    disk.undo()
    again = synthesize(out, cfg, workers=1, progress=False).outputs[0]
    assert members(again) == members(whole)


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}
