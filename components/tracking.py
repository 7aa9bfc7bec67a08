"""The one place that talks to MLflow. Every stage logs through here.

Default store: `sqlite:///mlflow.db` with artifacts in ./mlartifacts; MLFLOW_TRACKING_URI overrides
(e.g. the stack's tracking server whose artifacts live on S3).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
_SECRET_KEY = re.compile(r"(secret|password|passwd|token|api_?key|access_?key|credential)", re.I)
REDACTED = "***"
log = logging.getLogger(__name__)


def tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else ./mlflow.db; a relative sqlite path is made absolute here (MLflow keeps one
    store per URI string in a process, so a relative one would keep writing to the first working dir's file)."""
    return _absolute(os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI)


def _absolute(uri: str) -> str:
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    return uri


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking server does not answer; the message names it and what to do."""


def require_server(timeout: float = 5.0) -> str:
    """The tracking URI, after checking that a tracking *server* answers /health (local stores need none)."""
    from urllib.parse import urlsplit

    from components.probe import http_ok

    uri = tracking_uri()
    if urlsplit(uri).scheme in ("http", "https") and not http_ok(f"{uri.rstrip('/')}/health", timeout):
        raise TrackingUnavailable(f"MLflow tracking server at {uri} is unreachable (GET /health failed): start it "
                                  "(`desta stack up`) or unset MLFLOW_TRACKING_URI to log to the local sqlite store")
    return uri


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
    if tracking_uri() == _absolute(DEFAULT_URI):  # the default local store (mlflow sets the env var itself)
        location = Path(DEFAULT_ARTIFACTS).resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


class StageRun:
    """A thin handle over an active MLflow run, with redaction and flattening built in."""

    def __init__(self, run: Any, stage: str | None = None) -> None:
        self._run = run
        self.run_id: str = run.info.run_id
        self.stage = stage

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

    def log_datasets(self, datasets: list[Mapping[str, Any]]) -> None:
        """Datasets as run inputs (mlflow.log_inputs): name, digest, source URI, context, tags."""
        _log_datasets(self.run_id, datasets)

    def register_model(self, artifact_path: str | None, name: str, tags: Mapping[str, Any] | None = None,
                       source: str | None = None) -> str:
        """Register `source` (a logged model's `models:/<id>` URI), else this run's artifact directory
        `artifact_path`, as a new version of `name`; returns the version."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri())
        try:
            client.create_registered_model(name)
        except MlflowException as err:
            if "RESOURCE_ALREADY_EXISTS" not in str(err.error_code):
                raise
        logged = source.removeprefix("models:/") if source and source.startswith("models:/m-") else None
        version = client.create_model_version(
            name, source=source or f"runs:/{self.run_id}/{artifact_path}", run_id=self.run_id,
            tags={k: str(v) for k, v in redact(tags or {}).items()}, model_id=logged,  # a server checks the pair
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
            mlflow.set_tags(_owner())  # the resuming process owns it now
            yield StageRun(run, stage)
        return
    exp_id = experiment_id(experiment)
    close_orphans(exp_id)
    parent_run_id = parent_run_id or os.environ.get("DESTA_PARENT_RUN_ID")
    base_tags = {"desta.stage": stage, "mlflow.source.git.commit": git_commit() or "unknown", **_owner()}
    if parent_run_id:
        base_tags["mlflow.parentRunId"] = parent_run_id
    with mlflow.start_run(experiment_id=exp_id, run_name=stage, tags=base_tags) as run:
        handle = StageRun(run, stage)
        if params:
            handle.log_params(params)
        if tags:
            handle.set_tags(tags)
        yield handle


# --- runs whose process died (SIGKILL, OOM kill, power loss) stay RUNNING in MLflow: close them ---


def _owner() -> dict[str, str]:
    """Tags naming the process that holds a run open: host, pid and the pid's start time (pids are reused)."""
    import psutil

    return {"desta.host": socket.gethostname(), "desta.pid": str(os.getpid()),
            "desta.pid_started": f"{psutil.Process().create_time():.2f}"}


def _alive(pid: int, started: float) -> bool:
    import psutil

    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except psutil.NoSuchProcess:  # includes zombies
        return False
    except psutil.AccessDenied:  # exists, not ours to inspect: assume it is the owner
        return True


def close_orphans(exp_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of experiment `exp_id` whose owning process on this host is gone; returns their ids.

    Only runs tagged by `stage_run` on this host are judged: a run held by another machine is left alone.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri())
    host = socket.gethostname()
    runs = client.search_runs([exp_id], max_results=1000,
                              filter_string=f"attributes.status = 'RUNNING' and tags.`desta.host` = '{host}'")
    closed = []
    for run in runs:
        tags = run.data.tags
        try:
            pid, started = int(tags["desta.pid"]), float(tags["desta.pid_started"])
        except (KeyError, ValueError):
            continue
        if _alive(pid, started):
            continue
        note = (f"process {pid} on {host} ended without closing this run; marked KILLED at "
                f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} by pid {os.getpid()}")
        client.set_tag(run.info.run_id, "desta.orphaned", note)
        client.set_terminated(run.info.run_id, "KILLED")
        log.warning("MLflow run %s (%s): %s", run.info.run_id, tags.get("desta.stage", "?"), note)
        closed.append(run.info.run_id)
    return closed


# --- lineage: datasets on a stage run, and reading runs / model versions back (components/lineage) ---


def _dataset_source(uri: str):
    """An MLflow dataset source for `uri`: S3 (and other artifact schemes) resolve; plain paths become file URIs."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    if "://" not in uri:
        uri = Path(uri).resolve().as_uri()
    try:
        return resolve_dataset_source(uri)
    except Exception:  # noqa: BLE001 - an unknown scheme still gets recorded, as an HTTP-like opaque source
        from mlflow.data.http_dataset_source import HTTPDatasetSource

        return HTTPDatasetSource(uri)


def _log_datasets(run_id: str, datasets: list[Mapping[str, Any]]) -> None:
    """Log datasets as run inputs. Each: name, digest, source (URI or path), context, tags (str -> str)."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.tracking import MlflowClient

    inputs = []
    for d in datasets:
        ds = MetaDataset(_dataset_source(str(d["source"])), name=str(d["name"]), digest=str(d["digest"]))
        tags = [InputTag("mlflow.data.context", str(d.get("context") or "input"))]
        tags += [InputTag(str(k), str(v)) for k, v in redact(d.get("tags") or {}).items()]
        inputs.append(DatasetInput(ds._to_mlflow_entity(), tags=tags))
    if inputs:
        MlflowClient(tracking_uri()).log_inputs(run_id, datasets=inputs)


def _run_dict(run: Any) -> dict[str, Any]:
    inputs = []
    for di in (run.inputs.dataset_inputs if run.inputs else []) or []:
        tags = {t.key: t.value for t in di.tags}
        source = di.dataset.source
        try:
            import json as _json

            source = _json.loads(source).get("uri", source)
        except (ValueError, AttributeError):
            pass
        inputs.append({"name": di.dataset.name, "digest": di.dataset.digest, "source": source,
                       "source_type": di.dataset.source_type, "context": tags.get("mlflow.data.context"), "tags": tags})
    return {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "status": run.info.status,
            "run_name": run.info.run_name, "start_time": run.info.start_time, "artifact_uri": run.info.artifact_uri,
            "tags": dict(run.data.tags), "params": dict(run.data.params), "inputs": inputs}


def get_run(run_id: str) -> dict[str, Any] | None:
    """A run as plain data (tags, params, dataset inputs), or None when the server has no such run."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return _run_dict(MlflowClient(tracking_uri()).get_run(run_id))
    except MlflowException as err:
        if "RESOURCE_DOES_NOT_EXIST" in str(err.error_code) or "not found" in str(err).lower():
            return None
        raise


def find_runs(experiment_ids: list[str], tags: Mapping[str, str], max_results: int = 50) -> list[dict[str, Any]]:
    """Runs whose tags equal `tags`, newest first (tag keys may hold '/' and '.')."""
    from mlflow.tracking import MlflowClient

    def q(v: str) -> str:
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"

    flt = " and ".join(f"tags.`{k}` = {q(str(v))}" for k, v in tags.items())
    runs = MlflowClient(tracking_uri()).search_runs(
        experiment_ids, filter_string=flt, max_results=max_results, order_by=["attributes.start_time DESC"])
    return [_run_dict(r) for r in runs]


def version_logged_with(name: str, tag: str, value: str) -> str | None:
    """The newest version of registered model `name` whose run carries tag `tag` = `value`, else None."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri())
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=f"tags.`{tag}` = '{value}'", max_results=1000) if experiments else []
    versions = [int(v.version) for r in runs
                for v in client.search_model_versions(f"name = '{name}' and run_id = '{r.info.run_id}'")]
    return str(max(versions)) if versions else None


def get_model_version(name: str, version: str | None = None, alias: str | None = None) -> dict[str, Any]:
    """A registered model version by number or alias; raises LookupError when it does not exist."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri())
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, str(version))
    except MlflowException as err:
        raise LookupError(f"no model version {name}{'@' + alias if alias else '/' + str(version)}: "
                          f"{err.message if hasattr(err, 'message') else err}") from None
    source_run = None
    if (mv.source or "").startswith("models:/m-"):  # an MLflow logged model: the run that logged it
        try:
            source_run = client.get_logged_model(mv.source.removeprefix("models:/")).source_run_id
        except MlflowException:
            source_run = None
    return {"name": mv.name, "version": str(mv.version), "run_id": mv.run_id or None, "source": mv.source,
            "source_run_id": source_run, "aliases": list(getattr(mv, "aliases", []) or []),
            "tags": dict(mv.tags or {}), "status": mv.status}
