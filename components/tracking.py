"""The one place that talks to MLflow. Every stage logs through here.

Default store: `sqlite:///mlflow.db` with artifacts in ./mlartifacts; MLFLOW_TRACKING_URI overrides
(e.g. the stack's tracking server whose artifacts live on S3).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
_SECRET_KEY = re.compile(r"(secret|password|passwd|token|api_?key|access_?key|credential)", re.I)
REDACTED = "***"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def redact(params: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the values of secret-looking keys: secrets never reach MLflow."""
    return {k: (REDACTED if _SECRET_KEY.search(k) else v) for k, v in params.items()}


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 1}} -> {'train.lr': 1}; lists stay whole values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def git_commit(cwd: Path | None = None) -> str | None:
    """The current commit (with '-dirty' when the tree has changes), or None outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True
        ).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    return sha + ("-dirty" if dirty else "")


def _mlflow():
    import mlflow  # slow import (~2 s): only when a stage actually logs

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def experiment_id(name: str) -> str:
    """Get or create an experiment; with the default local store, artifacts go to ./mlartifacts."""
    mlflow = _mlflow()
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if tracking_uri() == DEFAULT_URI:
        location = Path(DEFAULT_ARTIFACTS).resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


class StageRun:
    """A thin handle over an active MLflow run, with redaction and flattening built in."""

    def __init__(self, run: Any) -> None:
        self._run = run
        self.run_id: str = run.info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = redact(flatten(params))
        _mlflow().log_params({k: str(v)[:6000] for k, v in flat.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        _mlflow().log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        _mlflow().set_tags({k: str(v) for k, v in redact(tags).items()})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        mlflow = _mlflow()
        if Path(path).is_dir():
            mlflow.log_artifacts(str(path), artifact_path=artifact_path)
        else:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_dict(self, data: Mapping[str, Any], name: str) -> None:
        _mlflow().log_dict(dict(data), name)

    def register_model(self, artifact_path: str, name: str, tags: Mapping[str, Any] | None = None) -> str:
        """Register this run's artifact directory as a new version of `name`; returns the version."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri())
        try:
            client.create_registered_model(name)
        except MlflowException as err:
            if "RESOURCE_ALREADY_EXISTS" not in str(err.error_code):
                raise
        version = client.create_model_version(
            name, source=f"runs:/{self.run_id}/{artifact_path}", run_id=self.run_id,
            tags={k: str(v) for k, v in redact(tags or {}).items()},
        )
        return str(version.version)


@contextmanager
def stage_run(
    stage: str,
    experiment: str,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
    run_id: str | None = None,
) -> Iterator[StageRun]:
    """Open an MLflow run for one stage, tagged with the stage name and the git commit.

    A parent run id (from the retrain flow) may come as an argument or DESTA_PARENT_RUN_ID, so a
    stage started by `dvc repro` under the flow nests under the flow's run. `run_id` reopens an
    existing run instead (a resumed training run continues the same MLflow run).
    """
    mlflow = _mlflow()
    if run_id is not None:
        with mlflow.start_run(run_id=run_id) as run:
            yield StageRun(run)
        return
    parent_run_id = parent_run_id or os.environ.get("DESTA_PARENT_RUN_ID")
    base_tags = {"desta.stage": stage, "mlflow.source.git.commit": git_commit() or "unknown"}
    if parent_run_id:
        base_tags["mlflow.parentRunId"] = parent_run_id
    with mlflow.start_run(
        experiment_id=experiment_id(experiment), run_name=stage, tags=base_tags
    ) as run:
        handle = StageRun(run)
        if params:
            handle.log_params(params)
        if tags:
            handle.set_tags(tags)
        yield handle
