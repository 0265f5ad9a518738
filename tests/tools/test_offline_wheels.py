"""tools/offline_wheels.sh refuses bad arguments before it downloads anything."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "offline_wheels.sh"


@pytest.mark.parametrize(("args", "message"), [
    (["--split"], "error: --split needs a size in MiB (a positive integer)"),
    (["--split", "0"], "error: --split needs a size in MiB (a positive integer)"),
    (["--split", "6O"], "error: --split needs a size in MiB (a positive integer)"),
    (["--bogus"], "error: unknown option --bogus (see --help)"),
])
def test_bad_arguments_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    res = subprocess.run(["bash", str(SCRIPT), *args, str(tmp_path / "w")], capture_output=True,
                         text=True, timeout=30)
    assert (res.returncode, res.stderr.strip()) == (2, message)
    assert not (tmp_path / "w").exists()  # nothing was downloaded
