"""Real servers for the flow tests, each on a free port with its own state dir (no shared sqlite dbs).

A Prefect server per test module: several processes that each start Prefect's *temporary* server on
one PREFECT_HOME fight over its sqlite file ("database is locked"); one server with many clients is fine.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from components.stack import procs
from components.stack.health import http_ok
from tests.flows.workspace import BIN, free_port


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_ok(url):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def prefect_env(home: Path, api_url: str) -> dict[str, str]:
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }


@contextmanager
def prefect_server(home: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A real `prefect server start` on a free port; yields the client env (PREFECT_API_URL, PREFECT_HOME)."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    penv = prefect_env(home, api)
    log = home / "server.log"
    proc = procs.spawn([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                       {**env, **penv}, log, cwd=home)
    try:
        wait_http(f"{api}/health", proc, log)
        yield penv
    finally:
        procs.terminate(proc.pid, 15.0)


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path, cwd: Path, health: str | None = None) -> Iterator[subprocess.Popen]:
    """Any long-running helper (worker, S3, mlflow) in its own process group, stopped at the end."""
    proc = procs.spawn(argv, env, log, cwd=cwd)
    try:
        if health:
            wait_http(health, proc, log)
        yield proc
    finally:
        procs.terminate(proc.pid, 15.0)
