"""The tracking module against a real MLflow store (sqlite + local artifacts, as the default)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components import tracking


@pytest.fixture()
def local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DESTA_PARENT_RUN_ID", raising=False)
    return tmp_path


def test_default_uri_is_sqlite(local_store: Path) -> None:
    assert tracking.tracking_uri() == "sqlite:///mlflow.db"


def test_env_overrides_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri() == "http://127.0.0.1:5999"


def test_stage_run_logs_params_metrics_artifacts(local_store: Path) -> None:
    from mlflow.tracking import MlflowClient

    artifact = local_store / "report.json"
    artifact.write_text(json.dumps({"ok": True}))
    params = {"train": {"lr": 0.002, "betas": [0.9, 0.98]}, "s3": {"secret_access_key": "hunter2"}}
    with tracking.stage_run("unit", "exp-a", params=params, tags={"api_token": "abc"}) as run:
        run.log_metrics({"loss": 1.5}, step=0)
        run.log_metrics({"loss": 1.0}, step=1)
        run.log_artifact(artifact)
        run.log_dict({"a": 1}, "extra/a.json")

    client = MlflowClient("sqlite:///mlflow.db")
    got = client.get_run(run.run_id)
    assert got.data.params["train.lr"] == "0.002"
    assert got.data.params["train.betas"] == "[0.9, 0.98]"
    assert got.data.params["s3.secret_access_key"] == tracking.REDACTED
    assert got.data.tags["api_token"] == tracking.REDACTED
    assert got.data.tags["desta.stage"] == "unit"
    assert got.data.tags["mlflow.source.git.commit"]
    assert [m.value for m in client.get_metric_history(run.run_id, "loss")] == [1.5, 1.0]
    names = {a.path for a in client.list_artifacts(run.run_id)}
    assert {"report.json", "extra"} <= names
    # default local store keeps artifacts in ./mlartifacts, not the refused ./mlruns file store
    assert list((local_store / "mlartifacts").rglob("report.json"))
    assert "hunter2" not in (local_store / "mlflow.db").read_bytes().decode("latin-1")


def test_parent_run_from_env(local_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    with tracking.stage_run("parent", "exp-b") as parent:
        pass
    monkeypatch.setenv("DESTA_PARENT_RUN_ID", parent.run_id)
    with tracking.stage_run("child", "exp-b") as child:
        pass
    tags = MlflowClient("sqlite:///mlflow.db").get_run(child.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.run_id


def test_flatten_and_redact() -> None:
    flat = tracking.flatten({"a": {"b": {"c": 1}}, "password": "x", "keys": [1, 2]})
    assert flat == {"a.b.c": 1, "password": "x", "keys": [1, 2]}
    assert tracking.redact(flat)["password"] == tracking.REDACTED
    assert tracking.redact(flat)["keys"] == [1, 2]
