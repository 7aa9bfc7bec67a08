"""What the fan-out tests share: flow settings, a Ray worker killer (the Prefect test server: conftest.py)."""

from __future__ import annotations

import signal
import threading
import time

from flows.settings import FlowSettings


def settings(**over: object) -> FlowSettings:
    base = dict(task_runner="threads", task_workers=2, cluster_address=None, stage_retries=0, push_retries=0,
                push_retry_delays=[0.0])
    return FlowSettings(**{**base, **over})  # type: ignore[arg-type]


def kill_busy_ray_workers(killed: list[int], every: float = 0.01, within: float = 300) -> threading.Thread:
    """A started thread that SIGKILLs every Ray worker it sees running a task (not idle), in one sweep, and
    records their pids in `killed`."""
    import psutil

    def sweep() -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and not killed:
            for proc in psutil.process_iter(["cmdline"]):
                title = (proc.info["cmdline"] or [""])[0]
                if title.startswith("ray::") and "IDLE" not in title and not title.endswith("Agent"):
                    proc.send_signal(signal.SIGKILL)  # a worker in the middle of a task
                    killed.append(proc.pid)
            time.sleep(every)

    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    return thread
