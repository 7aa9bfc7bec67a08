"""One progress bar style for every long stage (rich, on stderr)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_console = Console(stderr=True)


@contextmanager
def progress_bar(label: str, total: int, enabled: bool = True, unit: str = "items") -> Iterator[Callable[..., None]]:
    """Yield `advance(n=1, **fields)`; shows done/total, rate and ETA."""
    if not enabled:
        yield lambda n=1, **fields: None
        return
    columns = [
        TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
    ]
    with Progress(*columns, console=_console, transient=False) as progress:
        task = progress.add_task(label, total=total, rate="")

        def advance(n: int = 1, **fields: object) -> None:
            progress.advance(task, n)
            t = progress.tasks[0]
            speed = t.finished_speed or t.speed
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            progress.update(task, rate=(f"{speed:.1f} {unit}/s " if speed else "") + extra)

        yield advance
