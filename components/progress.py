"""One progress bar style for every long stage (rich, on stderr).

On a terminal: a live bar. Elsewhere (a Prefect worker's log, `dvc repro` piped to a file) a live bar
shows nothing until it ends, so a plain line is printed every `every` seconds and at the end instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_console = Console(stderr=True)


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


def _fields(fields: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items())


def _lines(label: str, total: int, unit: str, every: float) -> Callable[..., None]:
    """`advance` for a non-terminal: a line with done/total, rate, elapsed and ETA at most every `every` s."""
    t0 = last = time.monotonic()
    done = 0

    def advance(n: int = 1, **fields: object) -> None:
        nonlocal done, last
        done += n
        now = time.monotonic()
        if now - last < every and done < total:
            return
        last = now
        elapsed = now - t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = _clock((total - done) / rate) if rate > 0 else "?"
        pct = 100 * done // total if total else 100
        _console.print(f"{label} {done}/{total} ({pct}%) {rate:.1f} {unit}/s elapsed {_clock(elapsed)} "
                       f"eta {eta} {_fields(fields)}".rstrip(), markup=False, highlight=False, soft_wrap=True)

    return advance


@contextmanager
def progress_bar(label: str, total: int, enabled: bool = True, unit: str = "items",
                 every: float = 30.0) -> Iterator[Callable[..., None]]:
    """Yield `advance(n=1, **fields)`; shows done/total, rate and ETA."""
    if not enabled:
        yield lambda n=1, **fields: None
        return
    if not _console.is_terminal:
        yield _lines(label, total, unit, every)
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
            progress.update(task, rate=(f"{speed:.1f} {unit}/s " if speed else "") + _fields(fields))

        yield advance
