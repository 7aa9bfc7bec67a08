"""Stack settings: ports, buckets, pool and data directory (options override DESTA_STACK_* env vars)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATE_NAME = "stack.json"
HOST = "127.0.0.1"  # loopback only: nothing in the local stack listens beyond this machine

# The familiar ports plus 10000, so a stray MinIO / MLflow / Prefect on 9000 / 5000 / 4200 does not clash.
ENV_DEFAULTS: dict[str, tuple[str, Any]] = {
    "data_dir": ("DESTA_STACK_DIR", ".stack"),
    "s3_port": ("DESTA_STACK_S3_PORT", 19000),
    "mlflow_port": ("DESTA_STACK_MLFLOW_PORT", 15000),
    "prefect_port": ("DESTA_STACK_PREFECT_PORT", 14200),
    "dvc_bucket": ("DESTA_STACK_DVC_BUCKET", "desta-dvc"),
    "mlflow_bucket": ("DESTA_STACK_MLFLOW_BUCKET", "desta-mlflow"),
    "pool": ("DESTA_STACK_POOL", "desta-process"),
    "timeout": ("DESTA_STACK_TIMEOUT", 90.0),
}


@dataclass(frozen=True)
class StackConfig:
    """Everything `up` needs; stored in the state file so `down`/`status`/`env` need only the data dir."""

    data_dir: Path
    s3_port: int
    mlflow_port: int
    prefect_port: int
    dvc_bucket: str
    mlflow_bucket: str
    pool: str
    timeout: float  # seconds each service gets to become healthy

    def __post_init__(self) -> None:
        ports = [self.s3_port, self.mlflow_port, self.prefect_port]
        if any(not 0 < p < 65536 for p in ports) or len(set(ports)) != len(ports):
            raise ValueError(f"ports must be distinct and in 1..65535, got s3/mlflow/prefect = {ports}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")

    @classmethod
    def resolve(cls, **overrides: Any) -> StackConfig:
        """Options given (not None) win over DESTA_STACK_* env vars, which win over the defaults."""
        values: dict[str, Any] = {}
        for key, (env, default) in ENV_DEFAULTS.items():
            raw = overrides.get(key)
            if raw is None:
                raw = os.environ.get(env, default)
            try:
                values[key] = type(default)(raw) if not isinstance(default, str) else str(raw)
            except ValueError:
                raise ValueError(f"{key} (${env}) must be a {type(default).__name__}, got {raw!r}") from None
        values["data_dir"] = Path(values["data_dir"]).expanduser().resolve()  # sqlite URIs need absolute paths
        return cls(**values)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StackConfig:
        return cls(**{**raw, "data_dir": Path(raw["data_dir"])})

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "data_dir": str(self.data_dir)}

    @property
    def s3_url(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"http://{HOST}:{self.prefect_port}/api"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def state_file(self) -> Path:
        return self.data_dir / STATE_NAME


def data_dir_from_env(data_dir: Path | None = None) -> Path:
    """The data dir for commands that read an existing state file (`down`, `status`, `env`)."""
    raw = data_dir if data_dir is not None else os.environ.get("DESTA_STACK_DIR", ".stack")
    return Path(raw).expanduser().resolve()
