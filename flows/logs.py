"""Prefect logs a failed task's and flow's exception with its traceback. For the failures this package
raises on purpose (a dead server, a failed push or stage: one clear line ends the run), the traceback is
noise in front of that line: keep Prefect's message, drop the traceback. Any other exception keeps it."""

from __future__ import annotations

import logging

RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")


class DropTraceback(logging.Filter):
    """Strip the traceback from records of the `expected` exception types."""

    def __init__(self, expected: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, self.expected):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_tracebacks(*expected: type[BaseException]) -> None:
    """Install the filter on Prefect's run loggers (once; after Prefect configured its logging)."""
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        logger.filters = [f for f in logger.filters if not isinstance(f, DropTraceback)]
        logger.addFilter(DropTraceback(expected))
