"""One retrain at a time per workspace: an exclusive lock on `<repo>/.dvc/tmp/.desta-retrain.lock`.

Each stage is its own `dvc repro`, so DVC's own repo lock is free between stages: without this, a second
`desta run` (or a scheduled deployment run) could start stages under the first. The lock is an OS file
lock (flock): it goes with its process, also on SIGKILL, so a killed run never blocks the next one. It is
re-entrant within a process (the CLI holds it around the flow, which takes it again when a deployment
runs it alone). Who holds it is noted beside it, for the message the second run prints.
$DESTA_WORKSPACE_WAIT: seconds a second run waits for the first (default 0: it refuses at once).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout


class WorkspaceBusy(RuntimeError):
    """Another retrain holds this workspace; the message names it and what to do."""


def _paths(root: Path) -> tuple[Path, Path]:
    dvc = root.resolve() / ".dvc"
    tmp = dvc / "tmp" if dvc.is_dir() else root.resolve()  # never make a folder look like a DVC repo
    return tmp / ".desta-retrain.lock", tmp / ".desta-retrain.holder.json"


def _wait() -> float:
    raw = os.environ.get("DESTA_WORKSPACE_WAIT") or "0"
    try:
        return float(raw)
    except ValueError:
        raise WorkspaceBusy(f"$DESTA_WORKSPACE_WAIT must be seconds, got {raw!r}") from None


def holder(root: Path) -> str:
    """Who holds the lock, as noted by it (best effort: the note may be gone)."""
    try:
        info = json.loads(_paths(root)[1].read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"]))
        return f"pid {info['pid']} on {info['host']}, since {since}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"


@contextmanager
def workspace_lock(root: Path) -> Iterator[None]:
    """Hold the workspace's retrain lock for the block; WorkspaceBusy if another process holds it longer
    than $DESTA_WORKSPACE_WAIT seconds."""
    lock_path, note = _paths(root)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # one lock object per path and process, shared by threads (Prefect may run the flow in another thread)
    lock = FileLock(str(lock_path), timeout=_wait(), is_singleton=True, thread_local=False)
    outer = not lock.is_locked  # this process does not hold it yet
    try:
        lock.acquire()
    except Timeout:
        raise WorkspaceBusy(f"another retrain is running in {root} ({holder(root)}); wait for it to finish "
                            "(or set DESTA_WORKSPACE_WAIT=<seconds> to queue behind it), or stop it") from None
    try:
        if outer:
            note.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
        yield
    finally:
        if outer:
            note.unlink(missing_ok=True)
        lock.release()
