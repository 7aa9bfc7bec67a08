"""Health probes (plain HTTP, no client libraries) and waiting for a service to become healthy."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from components.probe import http_ok  # noqa: F401 -- the stack's probes, in one place for its users

Probe = Callable[[], bool]


class ServiceExited(RuntimeError):
    """The process died while we waited for it: no point waiting out the timeout."""


def http_json(url: str, body: Any | None = None, timeout: float = 3.0) -> Any:
    """GET (or POST `body` as JSON) and decode the JSON reply; raises on HTTP or network errors."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


def worker_polling(api_url: str, pool: str, name: str, since: datetime) -> bool:
    """A worker called `name` is ONLINE in `pool` with a heartbeat at or after `since` (UTC)."""
    try:
        workers = http_json(f"{api_url}/work_pools/{pool}/workers/filter", body={})
    except (urllib.error.URLError, OSError, ValueError):
        return False
    for w in workers or []:
        beat = w.get("last_heartbeat_time")
        if w.get("name") == name and w.get("status") == "ONLINE" and beat:
            if datetime.fromisoformat(beat) >= since:
                return True
    return False


def wait_healthy(probe: Probe, timeout: float, is_running: Callable[[], bool]) -> bool:
    """Poll `probe` until it passes (True) or `timeout` runs out (False); ServiceExited if the process dies."""

    def attempt() -> bool:
        if probe():
            return True
        if not is_running():
            raise ServiceExited()  # not retried: retry_if_result ignores exceptions, reraise passes it on
        return False

    retrying = Retrying(
        stop=stop_after_delay(timeout), wait=wait_fixed(0.25), retry=retry_if_result(lambda ok: not ok), reraise=True
    )
    try:
        return retrying(attempt)
    except RetryError:
        return False
