"""Progress off a terminal (plain lines every interval), the bar's rate on the summaries'
clock, and a disabled bar."""

from __future__ import annotations

import io

import pytest
from rich.progress import Progress

from depthkit.core import progress


class Pipe(io.StringIO):
    """stderr under nohup / CI: not a terminal."""

    def isatty(self) -> bool:
        return False


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Pipe:
    """A Pipe that each test puts in place of sys.stderr (pytest's capture swaps sys.stderr
    back after fixtures run, so the swap happens in the test: `stderr.install()`)."""
    pipe = Pipe()
    pipe.install = lambda: monkeypatch.setattr("sys.stderr", pipe)
    return pipe


def test_off_a_terminal_plain_lines_every_interval(stderr: Pipe) -> None:
    stderr.install()
    with progress.progress_bar("shard", total=4, interval=0.0) as advance:
        for _ in range(4):
            advance(1, loss="0.5")
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("shard: 3/4 (75%), ") and "samples/s" in lines[2]
    assert "ETA 0:00:00" in lines[2] and lines[2].endswith("loss=0.5")
    assert "\x1b" not in stderr.getvalue()  # no terminal control codes in a log file


def test_off_a_terminal_nothing_before_the_interval(stderr: Pipe) -> None:
    stderr.install()
    with progress.progress_bar("synth", total=10) as advance:  # default: every ~10 s
        advance(5)
    assert stderr.getvalue() == ""


def test_disabled_prints_nothing(stderr: Pipe) -> None:
    stderr.install()
    with progress.progress_bar("x", total=2, enabled=False, interval=0.0) as advance:
        advance()
    assert stderr.getvalue() == ""


def test_plain_line_rate_and_eta_since_work_started() -> None:
    assert (progress.plain_line("train", 50, 100, 10.0)
            == "train: 50/100 (50%), 5 samples/s, ETA 0:00:10")
    # a resume's first advance (`start`) is not work done now: kept out of the rate
    assert progress.plain_line("train", 60, 100, 10.0, start=40).startswith(
        "train: 60/100 (60%), 2 samples/s, ETA 0:00:20")
    assert progress.plain_line("tars", 3, None, 0.0, unit="tars") == "tars: 3, -- tars/s"


def test_bar_rate_is_the_average_since_it_opened() -> None:
    """Same clock as the summaries (done / seconds since work started), not rich's recent-
    window speed that leaves out the slow first batch."""
    now = [0.0]
    bar = Progress(get_time=lambda: now[0], disable=True)
    task_id = bar.add_task("epoch", total=100, unit="samples")
    now[0] = 9.0  # first batch: loader start-up, warm-up
    bar.update(task_id, advance=10)
    now[0] = 10.0
    bar.update(task_id, advance=40)
    task = bar.tasks[0]
    assert str(progress.RateColumn().render(task)) == "5 samples/s"
    assert str(progress.EtaColumn().render(task)) == "ETA 0:00:10"


def test_bar_rate_leaves_out_what_a_resume_had_done() -> None:
    now = [0.0]
    bar = Progress(get_time=lambda: now[0], disable=True)
    task_id = bar.add_task("epoch", total=100, unit="samples", skipped=40)
    bar.update(task_id, advance=40)  # batches trained before the resume
    now[0] = 10.0
    bar.update(task_id, advance=20)
    assert str(progress.RateColumn().render(bar.tasks[0])) == "2 samples/s"
