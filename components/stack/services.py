"""The four services of the local stack: command line, environment, port, URL and health probe."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from components.stack import objectstore
from components.stack.config import HOST, StackConfig
from components.stack.env import FOREIGN, client_env, s3_env
from components.stack.health import http_ok, worker_polling

WORKER_NAME = "desta-worker"


@dataclass(frozen=True)
class Service:
    """One process of the stack. `healthy(started)` probes it once; `started` is its UTC start time."""

    name: str
    title: str
    argv: tuple[str, ...]
    env: dict[str, str]
    port: int | None
    url: str
    log: Path
    healthy: Callable[[datetime], bool] = field(compare=False, repr=False)


def executable(name: str) -> str:
    """A console script of this venv (beside the running interpreter), else from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"`{name}` not found next to {sys.executable} or on PATH")
    return found


def repo_dir() -> str:
    """Where the worker runs deployments of prefect.yaml: $DESTA_REPO_DIR, else the current directory."""
    return str(Path(os.environ.get("DESTA_REPO_DIR") or os.getcwd()).resolve())


def base_env() -> dict[str, str]:
    """The user's environment with telemetry off (and without a session token for other keys)."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    return {**env, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def prefect_env(cfg: StackConfig) -> dict[str, str]:
    """Prefect state lives in the data dir, never in the user's ~/.prefect."""
    home = cfg.data_dir / "prefect"
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": cfg.prefect_api_url,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
    }


def services(cfg: StackConfig) -> list[Service]:
    """In start order: S3, MLflow, Prefect server, Prefect worker. The stack's S3 credentials must exist
    (`objectstore.credentials(..., create=True)`: `up` makes them once)."""
    env = base_env()
    logs = cfg.logs_dir
    s3 = Service(
        "s3", "S3 (SeaweedFS)",
        objectstore.argv(executable("weed"), cfg, cfg.data_dir / objectstore.IDENTITIES_NAME),
        env, cfg.s3_port, cfg.s3_url, logs / "s3.log",
        healthy=lambda _: http_ok(f"{cfg.s3_url}/healthz"),
    )
    mlflow = Service(
        "mlflow", "MLflow tracking server",
        (
            executable("mlflow"), "server", "--host", HOST, "--port", str(cfg.mlflow_port),
            "--backend-store-uri", f"sqlite:///{cfg.data_dir / 'mlflow.db'}",
            "--artifacts-destination", f"s3://{cfg.mlflow_bucket}/mlartifacts", "--workers", "1",
        ),
        # Job execution spawns extra processes (huey consumers): off, to keep memory down.
        {**env, **s3_env(cfg), "MLFLOW_S3_ENDPOINT_URL": cfg.s3_url, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        cfg.mlflow_port, cfg.mlflow_url, logs / "mlflow.log",
        healthy=lambda _: http_ok(f"{cfg.mlflow_url}/health"),
    )
    prefect = Service(
        "prefect", "Prefect server",
        (executable("prefect"), "server", "start", "--host", HOST, "--port", str(cfg.prefect_port)),
        {**env, **prefect_env(cfg)}, cfg.prefect_port, cfg.prefect_api_url, logs / "prefect.log",
        healthy=lambda _: http_ok(f"{cfg.prefect_api_url}/health"),
    )
    worker = Service(
        "worker", f"Prefect worker (pool {cfg.pool})",
        (
            executable("prefect"), "worker", "start", "--pool", cfg.pool, "--type", "process",
            "--name", WORKER_NAME, "--install-policy", "never", "--no-create-pool-if-not-found",
        ),
        # Flow runs inherit this: they log to the stack's MLflow and S3, and deployments (prefect.yaml)
        # run in DESTA_REPO_DIR: the repo `up` was started from, unless the caller names one.
        {**env, **client_env(cfg), **prefect_env(cfg), "DESTA_REPO_DIR": repo_dir()},
        None, cfg.prefect_api_url, logs / "worker.log",
        healthy=lambda since: worker_polling(cfg.prefect_api_url, cfg.pool, WORKER_NAME, since),
    )
    return [s3, mlflow, prefect, worker]
