"""benchmarks/gpu/check.sh where there is no GPU: it stops with one error line, and its offline
install joins split wheels (also spread over carry folders) and refuses ones that do not match
SHA256SUMS."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "benchmarks" / "gpu" / "check.sh"


def _check(tmp: Path, wheels: Path, python: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": python, "CHECK_WORK": str(tmp / "work")}
    return subprocess.run(["bash", str(CHECK), str(tmp / "out"), str(wheels)],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA it runs the whole check")
def test_without_cuda_it_stops_with_one_error_line(tmp_path: Path) -> None:
    res = _check(tmp_path, tmp_path / "no-wheels", sys.executable)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]  # exactly one line
    assert res.stderr.startswith("error: no CUDA device: torch ")
    assert "versions: python=" in res.stdout  # it ran up to the CUDA check...
    summary = json.loads((tmp_path / "out" / "check.json").read_text())
    assert summary["stages"] == []  # ...and no stage after it
    assert summary["error"].startswith("no CUDA device")
    assert summary["env"]["cuda_available"] is False


def _python_without_site(tmp_path: Path) -> str:
    """An interpreter that finds none of the installed packages (so the check installs)."""
    wrapper = tmp_path / "python-nosite"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return str(wrapper)


def _split_wheel(folder: Path, corrupt: bool) -> bytes:
    """A wheel in two parts spread over two carry folders, as tools/offline_wheels.sh --split
    can leave it (the first part in the second folder), with SHA256SUMS."""
    whole = folder / "demo-1.0-py3-none-any.whl"
    folder.mkdir()
    with zipfile.ZipFile(whole, "w") as z:
        z.writestr("demo_marker.py", "X = 1\n" * 200)
    data = whole.read_bytes()
    whole.unlink()
    half = len(data) // 2
    sums = f"{hashlib.sha256(data).hexdigest()}  {whole.name}\n"
    first = data[:half] + (b"!" if corrupt else b"")
    for carry, part, piece in (("carry-02", "aa", first), ("carry-01", "ab", data[half:])):
        (folder / carry).mkdir()
        (folder / carry / "SHA256SUMS").write_text(sums)
        (folder / carry / f"{whole.name}.part-{part}").write_bytes(piece)
    return data


def test_split_wheels_are_joined_checked_and_unpacked(tmp_path: Path) -> None:
    data = _split_wheel(tmp_path / "wheels", corrupt=False)
    res = _check(tmp_path, tmp_path / "wheels", _python_without_site(tmp_path))
    joined = tmp_path / "work" / "wheels" / "demo-1.0-py3-none-any.whl"
    assert joined.read_bytes() == data  # parts in the order of their names, not of folders
    assert (tmp_path / "work" / "site" / "demo_marker.py").is_file()  # unpacked (no pip there)
    # the demo wheel is not DALI: the check says so in one line and stops
    assert res.returncode == 1
    assert res.stderr.startswith("error: still not importable after installing")


def test_a_damaged_part_is_refused(tmp_path: Path) -> None:
    _split_wheel(tmp_path / "wheels", corrupt=True)
    res = _check(tmp_path, tmp_path / "wheels", _python_without_site(tmp_path))
    assert res.returncode == 1
    assert res.stderr.strip() == (f"error: the wheels in {tmp_path / 'wheels'} do not match "
                                  f"their SHA256SUMS (see {tmp_path / 'out' / 'check.log'})")
    assert not (tmp_path / "work" / "site").exists()
