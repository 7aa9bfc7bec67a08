"""What every `desta` command shares on the terminal: the stderr console, the one error line, the
`--params` option and the active profile (a bad params.yaml is an error line naming the key)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from components.config import Profile

console = Console(stderr=True)
ParamsOpt = typer.Option(None, "--params", help="params.yaml to use (default: ./params.yaml or $DESTA_PARAMS).")


def fail_line(message: str) -> None:
    """One error line on stderr (never wrapped, markup in the message shown as is)."""
    console.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """One error line on stderr, then exit `code`."""
    fail_line(message)
    raise typer.Exit(code)


def load_profile(params: Path | None, track: bool = False) -> Profile:
    """The active profile of params.yaml, or an error line naming what is wrong. With `track`, a stage
    that logs to MLflow stops here, before any work, when the tracking server does not answer."""
    from components.config import ConfigError, load_params

    try:
        prof = load_params(params).active
    except ConfigError as err:
        fail(str(err))
    if track:
        require_tracking(stage=True)
    return prof


def require_tracking(stage: bool = False) -> None:
    """An error line (exit 1) when the MLflow tracking server does not answer."""
    from components.tracking import TrackingUnavailable, require_server

    try:
        require_server()
    except TrackingUnavailable as err:
        fail(f"{err}, or pass --no-track" if stage else str(err))
