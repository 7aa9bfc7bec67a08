"""The state file: what `up` started (pid, port, url, log, start time), written atomically."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from components.atomic import atomic_write_text
from components.stack.config import StackConfig

VERSION = 1


def new_state(cfg: StackConfig) -> dict[str, Any]:
    return {"version": VERSION, "complete": False, "config": cfg.as_dict(), "services": {}}


def read_state(path: Path) -> dict[str, Any] | None:
    """The state in `path`, or None when there is none (a corrupt file is an error: it names pids to stop)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        state = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"state file {path} is not valid JSON ({err}); stop the services by hand and delete it") from None
    if state.get("version") != VERSION:
        raise ValueError(f"state file {path} has version {state.get('version')!r}, expected {VERSION}")
    return state


def write_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(state, indent=2) + "\n")


def config_of(state: dict[str, Any]) -> StackConfig:
    return StackConfig.from_dict(state["config"])


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
