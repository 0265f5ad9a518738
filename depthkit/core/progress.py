"""Progress for long work: a rich bar on a terminal, else a plain line every ~10 s (nohup, CI,
cluster logs), both with the same rate (items since the bar opened / seconds since then, the
clock the summaries use) and ETA.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

Advance = Callable[..., None]
PLAIN_INTERVAL_S = 10.0  # seconds between plain progress lines off a terminal
def average_rate(done: float, seconds: float) -> float | None:
    """Items per second since work started (None before any time has passed)."""
    return done / seconds if seconds > 0 else None


class RateColumn(ProgressColumn):
    """Items per second since the bar opened, with the unit named in the task's `unit` field."""

    def render(self, task: Task) -> Text:
        speed = _task_rate(task)
        unit = task.fields.get("unit", "it")
        text = f"-- {unit}/s" if not speed else f"{speed:,.0f} {unit}/s"
        return Text(text, style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """Time left at the average rate since the bar opened (the RateColumn's)."""

    def render(self, task: Task) -> Text:
        speed = _task_rate(task)
        left = "-:--:--" if not speed or task.total is None else _clock(
            max(task.total - task.completed, 0) / speed)
        return Text(f"ETA {left}", style="progress.remaining")


def _task_rate(task: Task) -> float | None:
    return average_rate(task.completed - task.fields.get("skipped", 0), task.elapsed or 0.0)


def stderr_console() -> Console:
    """Where progress and summaries go (stderr, so stdout stays clean for data)."""
    return Console(stderr=True)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def plain_line(description: str, done: int, total: int | None, seconds: float,
               unit: str = "samples", start: int = 0) -> str:
    """'synth: 120/400 (30%), 12 samples/s, ETA 0:00:23' (rate and ETA from work done here)."""
    rate = average_rate(done - start, seconds)
    count = f"{done:,}"
    if total is not None:
        count += f"/{total:,} ({100 * done / max(total, 1):.0f}%)"
    speed = f"-- {unit}/s" if not rate else f"{rate:,.0f} {unit}/s"
    eta = "" if not rate or total is None else f", ETA {_clock(max(total - done, 0) / rate)}"
    return f"{description}: {count}, {speed}{eta}"


@contextmanager
def _plain(description: str, total: int | None, unit: str, interval: float, start: int,
           stream: TextIO) -> Iterator[Advance]:
    """Off a terminal: one plain line every `interval` seconds while work goes on."""
    t0 = time.monotonic()
    state = {"done": 0, "last": t0}

    def advance(n: int = 1, **fields: object) -> None:
        state["done"] += n
        now = time.monotonic()
        if now - state["last"] >= interval:
            state["last"] = now
            extra = "".join(f" {k}={v}" for k, v in fields.items())
            line = plain_line(description, state["done"], total, now - t0, unit, start)
            print(line + extra, file=stream, flush=True)

    yield advance


@contextmanager
def progress_bar(description: str, total: int | None, unit: str = "samples",
                 enabled: bool = True, interval: float = PLAIN_INTERVAL_S,
                 start: int = 0) -> Iterator[Advance]:
    """Yield `advance(n=1, **fields)` that moves a bar showing count, rate and ETA.

    Extra keyword fields (e.g. loss=0.12) are shown after the bar. A rich bar (cleared when
    done: the caller prints the result) on a terminal, else a plain line every `interval`
    seconds. `start`: items of the first advance done earlier (a resume), kept out of the
    rate. A no-op when `enabled` is False (e.g. on non-zero ranks).
    """
    if not enabled:
        yield lambda n=1, **fields: None
        return
    if not sys.stderr.isatty():
        with _plain(description, total, unit, interval, start, sys.stderr) as advance:
            yield advance
        return
    with Progress(*_columns(), console=stderr_console(), transient=True) as bar:
        task = bar.add_task(description, total=total, unit=unit, extra="", skipped=start)

        def advance(n: int = 1, **fields: object) -> None:
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            bar.update(task, advance=n, **({"extra": extra} if extra else {}))

        yield advance


def _columns() -> list[ProgressColumn]:
    return [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        EtaColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[extra]}"),
    ]
