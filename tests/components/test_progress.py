"""Progress off a terminal (a worker's log, a piped `dvc repro`): plain lines, throttled, ending at the total."""

from __future__ import annotations

import contextlib
import io
import re

from components.progress import progress_bar


def _run(every: float, steps: int = 5) -> list[str]:
    err = io.StringIO()  # not a terminal, as a log file is not
    with contextlib.redirect_stderr(err), progress_bar("stage", steps * 2, unit="rows", every=every) as advance:
        for _ in range(steps):
            advance(2, phase="x")
    return err.getvalue().splitlines()


def test_lines_every_interval_and_at_the_end() -> None:
    lines = _run(every=0.0)
    assert [re.match(r"stage (\d+)/10 ", x).group(1) for x in lines] == ["2", "4", "6", "8", "10"]
    assert re.fullmatch(r"stage 10/10 \(100%\) [\d.]+ rows/s elapsed 0:00:00 eta 0:00:00 phase=x", lines[-1])
    assert "(20%)" in lines[0] and "phase=x" in lines[0]


def test_throttled_lines_still_end_at_the_total() -> None:
    lines = _run(every=3600.0)
    assert len(lines) == 1 and lines[0].startswith("stage 10/10 (100%)")


def test_disabled_prints_nothing() -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), progress_bar("stage", 3, enabled=False) as advance:
        advance(3)
    assert err.getvalue() == ""
