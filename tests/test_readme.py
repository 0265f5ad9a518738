"""The README's commands, as written: the two set-up commands exist as make targets CI calls,
and the typical run works end to end (on a smaller synthetic set, the only change)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SMALLER = ["--bgs", "3", "--fgs", "4"]  # appended to `depthkit synth`: the last value wins


def _block(heading: str) -> str:
    """The first ```bash block after `heading`."""
    after = README[README.index(heading):]
    return re.search(r"```bash\n(.*?)```", after, re.S).group(1)


def _commands(block: str) -> list[str]:
    """Command lines of a block: continuations joined, comments and blanks dropped."""
    text = block.replace("\\\n", " ")
    lines = (re.sub(r"\s+#.*$", "", line).strip() for line in text.splitlines())
    return [line for line in lines if line]


def test_quick_start_is_two_make_targets_that_ci_runs() -> None:
    assert _commands(_block("## Quick start")) == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert re.search(rf"^{target}: \$\(BIN\)/\.installed$", makefile, re.M), target
    assert re.search(r"^\$\(BIN\)/\.installed:.*\n\t\$\(PYTHON\) -m venv", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_typical_run_works_as_written(tmp_path: Path) -> None:
    commands = _commands(_block("### A typical run"))
    assert commands[0].startswith("depthkit synth") and len(commands) >= 6
    # as in a clone, where the README's commands run: the repository's tracked placeholders
    for tracked in subprocess.run(["git", "ls-files", "shards"], cwd=ROOT, capture_output=True,
                                  text=True, check=True).stdout.split():
        (tmp_path / tracked).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / tracked).write_bytes((ROOT / tracked).read_bytes())
    assert (tmp_path / "shards" / "README.md").is_file()
    for line in commands:
        argv = shlex.split(line)
        if argv[0] != "depthkit":
            continue  # tensorboard: a viewer, not ours to run
        if argv[1] == "synth":
            argv += SMALLER
        r = subprocess.run([sys.executable, "-m", "depthkit", *argv[1:]], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{line}\n{r.stdout}\n{r.stderr}"
        assert "Traceback" not in r.stderr, line
    for made in ("runs/school/last.pt", "runs/school/metrics.json", "runs/school/grid.png",
                 "pred/001_side.png"):
        assert (tmp_path / made).is_file(), made
