"""Real servers for the flow tests, each on a free port with its own state dir (no shared sqlite dbs).

A Prefect server per test module: several processes that each start Prefect's *temporary* server on
one PREFECT_HOME fight over its sqlite file ("database is locked"); one server with many clients is fine.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from components.stack import procs
from components.stack.health import http_ok
from tests.flows.workspace import BIN, free_port


PORT_TAKEN = ("address already in use", "Errno 98")


class PortTaken(RuntimeError):
    """The server exited because another process took its port between picking and binding."""


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    """Until `url` answers while `proc` runs (an answer from another server on a taken port does not count)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text().rsplit("\n=== ", 1)[-1][-3000:]  # this start's output (spawn appends)
            kind = PortTaken if any(m in text for m in PORT_TAKEN) else RuntimeError
            raise kind(f"{proc.args[0]} exited ({proc.returncode}):\n{text}")
        if http_ok(url):
            time.sleep(0.5)  # a server that lost the port race exits at once: make sure it is still ours
            if proc.poll() is None:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def on_free_port(start: Callable[[int], subprocess.Popen], health: Callable[[int], str], log: Path,
                 tries: int = 3, timeout: float = 180.0, grace: float = 15.0) -> Iterator[tuple[int, subprocess.Popen]]:
    """A server `start(port)`s on a free port; picked again when another process took the port first.
    Stopped at the end (its whole process group: SIGTERM, SIGKILL after `grace` s)."""
    for attempt in range(tries):
        port = free_port()
        proc = start(port)
        try:
            wait_http(health(port), proc, log, timeout)
        except PortTaken:
            procs.terminate(proc.pid, grace)
            if attempt == tries - 1:
                raise
            continue
        except BaseException:
            procs.terminate(proc.pid, grace)
            raise
        try:
            yield port, proc
        finally:
            procs.terminate(proc.pid, grace)
        return


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
    log = home / "server.log"

    def start(port: int) -> subprocess.Popen:
        argv = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        return procs.spawn(argv, {**env, **prefect_env(home, f"http://127.0.0.1:{port}/api")}, log, cwd=home)

    with on_free_port(start, lambda port: f"http://127.0.0.1:{port}/api/health", log) as (port, _):
        yield prefect_env(home, f"http://127.0.0.1:{port}/api")


@contextmanager
def mlflow_server(home: Path, env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen]]:
    """A real `mlflow server` (sqlite store, local artifacts) on a free port: (tracking URI, its process)."""
    log = home / "mlflow.log"
    home.mkdir(parents=True, exist_ok=True)

    def start(port: int) -> subprocess.Popen:
        return procs.spawn([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                            "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
                            "--default-artifact-root", str(home / "artifacts")], env, log, cwd=home)

    with on_free_port(start, lambda port: f"http://127.0.0.1:{port}/health", log) as (port, proc):
        yield f"http://127.0.0.1:{port}", proc


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
