"""Progress bars with rate and ETA for long work (rich, which Typer already depends on)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
    TimeRemainingColumn,
)
from rich.text import Text

Advance = Callable[..., None]


class RateColumn(ProgressColumn):
    """Items per second, with the unit named in the task's `unit` field."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "it")
        text = f"-- {unit}/s" if speed is None else f"{speed:,.0f} {unit}/s"
        return Text(text, style="progress.data.speed")


def stderr_console() -> Console:
    """Where progress and summaries go (stderr, so stdout stays clean for data)."""
    return Console(stderr=True)


@contextmanager
def progress_bar(
    description: str, total: int | None, unit: str = "samples", enabled: bool = True
) -> Iterator[Advance]:
    """Yield `advance(n=1, **fields)` that moves a bar showing count, rate and ETA.

    Extra keyword fields (e.g. loss=0.12) are shown after the bar. A no-op when
    `enabled` is False (e.g. on non-zero ranks).
    """
    if not enabled:
        yield lambda n=1, **fields: None
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[extra]}"),
    ]
    with Progress(*columns, console=stderr_console()) as bar:
        task = bar.add_task(description, total=total, unit=unit, extra="")

        def advance(n: int = 1, **fields: object) -> None:
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            bar.update(task, advance=n, **({"extra": extra} if extra else {}))

        yield advance
