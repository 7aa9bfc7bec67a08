"""Flow knobs that are about *how* work runs, not what it computes (so not in params.yaml / DVC deps).

From the environment, so a deployment, a worker or a test can change them without editing files:
- DESTA_TASK_RUNNER: `threads` (default), `dask` or `ray` (clusters: prefect-dask / prefect-ray, installed
  by `make setup`); DESTA_TASK_WORKERS: threads (default 2); DESTA_TASK_CLUSTER: address of a running dask/ray cluster.
- DESTA_STAGE_RETRIES (default 2), DESTA_PUSH_RETRIES (default 3),
  DESTA_PUSH_RETRY_DELAYS (seconds, comma separated, default "5,15,45").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

RUNNERS = ("threads", "dask", "ray")


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    try:
        value = int(raw) if raw not in (None, "") else default
    except ValueError:
        raise ValueError(f"${name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"${name} must be >= 0, got {value}")
    return value


def _delays(name: str, default: list[float]) -> list[float]:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return [float(x) for x in raw.split(",")]
    except ValueError:
        raise ValueError(f"${name} must be comma-separated seconds, got {raw!r}") from None


@dataclass(frozen=True)
class FlowSettings:
    task_runner: str
    task_workers: int
    cluster_address: str | None
    stage_retries: int
    push_retries: int
    push_retry_delays: list[float]

    @classmethod
    def from_env(cls) -> FlowSettings:
        runner = os.environ.get("DESTA_TASK_RUNNER", "threads")
        if runner not in RUNNERS:
            raise ValueError(f"$DESTA_TASK_RUNNER must be one of {RUNNERS}, got {runner!r}")
        return cls(
            task_runner=runner,
            task_workers=_int("DESTA_TASK_WORKERS", 2),
            cluster_address=os.environ.get("DESTA_TASK_CLUSTER") or None,
            stage_retries=_int("DESTA_STAGE_RETRIES", 2),
            push_retries=_int("DESTA_PUSH_RETRIES", 3),
            push_retry_delays=_delays("DESTA_PUSH_RETRY_DELAYS", [5.0, 15.0, 45.0]),
        )
