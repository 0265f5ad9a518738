"""A full disk (ENOSPC/EDQUOT) is a one-line DiskFullError naming the file, with the free space
and an estimate of what is needed; atomic writes leave no temp file behind."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest

from depthkit import cli
from depthkit.core.atomic import atomic_file, is_tmp_name, write_atomic
from depthkit.core.diskspace import DiskFullError, SpaceUse, human, on_disk_full


def tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if is_tmp_name(p.name)]


def test_write_atomic_full_disk_names_file_keeps_old_and_removes_temp(tmp_path, small_disk):
    target = tmp_path / "out" / "metrics.json"
    write_atomic(target, b"old", parents=True)
    small_disk(tmp_path, capacity=1000)
    with pytest.raises(DiskFullError) as caught:
        write_atomic(target, b"x" * 5000)
    text = str(caught.value)
    assert text.startswith(f"disk full writing {target}: 997 B free")
    assert "this file needs about 5.0 kB more" in text
    assert "\n" not in text
    assert target.read_bytes() == b"old"  # the complete old file stays
    assert tmp_files(tmp_path) == []


def test_wrapped_oserror_is_found(tmp_path):
    """torch.save turns its file's OSError into a RuntimeError; the cause still counts."""
    target = tmp_path / "ck.pt"
    with pytest.raises(DiskFullError) as caught, atomic_file(target) as f:
        f.write(b"part")
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError:
            raise RuntimeError("enforce fail at inline_container.cc") from None
    assert caught.value.path == target
    assert tmp_files(tmp_path) == [] and not target.exists()


def test_other_errors_pass_unchanged(tmp_path):
    with pytest.raises(PermissionError), atomic_file(tmp_path / "a") as f:
        f.write(b"1")
        raise PermissionError(errno.EACCES, "Permission denied")
    assert tmp_files(tmp_path) == []


def test_outer_guard_gives_the_run_estimate_and_resume_hint(tmp_path):
    use = SpaceUse(total=10, bytes=3000, items=3, kept=2)  # 1000 B/item, 8 items not kept
    outer = on_disk_full(needs=use.needs, resumes=True)
    with pytest.raises(DiskFullError) as caught, outer, on_disk_full(tmp_path / "a.tar"):
        raise OSError(errno.ENOSPC, "No space left on device")
    text = str(caught.value)
    assert f"writing {tmp_path / 'a.tar'}:" in text
    assert "this run needs about 8.0 kB more" in text
    assert text.endswith("free space and rerun the same command (it resumes)")


def test_space_use_estimates():
    assert SpaceUse(total=5).needs() is None  # nothing written, nothing known
    assert SpaceUse(total=5, fallback=100.0).needs() == 500
    blocks = SpaceUse(total=4, block=4096)
    blocks.add(10)
    blocks.items = blocks.kept = 1
    assert blocks.needs() == 3 * 4096  # small files take whole blocks
    assert human(340_000_000) == "340 MB" and human(1_234_567) == "1.2 MB"


def test_cli_turns_a_stray_enospc_into_one_line(monkeypatch, capsys):
    def full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/data/x.bin")

    monkeypatch.setattr(cli, "app", full)
    monkeypatch.setattr(sys, "argv", ["depthkit"])
    with pytest.raises(SystemExit) as stop:
        cli.main()
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.startswith("error: disk full writing /data/x.bin") and err.count("\n") == 1


def test_cli_leaves_other_oserrors_alone(monkeypatch):
    def broken() -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(cli, "app", broken)
    with pytest.raises(OSError, match="Input/output"):
        cli.main()
