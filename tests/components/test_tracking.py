"""The tracking module against a real MLflow store (sqlite + local artifacts, as the default)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from components import tracking


@pytest.fixture()
def local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DESTA_PARENT_RUN_ID", raising=False)
    return tmp_path


def test_default_uri_is_sqlite(local_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracking.tracking_uri() == f"sqlite:///{local_store.resolve() / 'mlflow.db'}"  # absolute: see tracking_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///sub/x.db")
    assert tracking.tracking_uri() == f"sqlite:///{local_store.resolve() / 'sub' / 'x.db'}"


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

    client = MlflowClient(tracking.tracking_uri())
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
    tags = MlflowClient(tracking.tracking_uri()).get_run(child.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.run_id


def test_flatten_and_redact() -> None:
    flat = tracking.flatten({"a": {"b": {"c": 1}}, "password": "x", "keys": [1, 2]})
    assert flat == {"a.b.c": 1, "password": "x", "keys": [1, 2]}
    assert tracking.redact(flat)["password"] == tracking.REDACTED
    assert tracking.redact(flat)["keys"] == [1, 2]


def _hold_run(store: Path, stage: str, then: str) -> subprocess.Popen:
    """A process that opens a stage run, prints its id, then runs `then` (python)."""
    code = (f"import os, signal, time\nfrom components import tracking\n"
            f"with tracking.stage_run({stage!r}, 'exp-o') as r:\n    print(r.run_id, flush=True)\n    {then}\n")
    env = {k: v for k, v in os.environ.items() if k != "DESTA_PARENT_RUN_ID"}  # the package is installed
    return subprocess.Popen([sys.executable, "-c", code], cwd=store, env=env, stdout=subprocess.PIPE, text=True)


def test_run_of_a_killed_process_is_closed_by_the_next_stage(local_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL leaves a run RUNNING; the next stage run on this host marks it KILLED and says why. A run
    whose process lives, one whose pid was reused by another process, one from another host: judged right."""
    from mlflow.tracking import MlflowClient

    # An absolute URI: MLflow caches its sqlite store per URI, and "sqlite:///mlflow.db" was another test's.
    uri = f"sqlite:///{local_store / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    victim = _hold_run(local_store, "victim", "os.kill(os.getpid(), signal.SIGKILL)")
    victim_id = victim.stdout.readline().strip()
    assert victim.wait(timeout=120) == -signal.SIGKILL
    client = MlflowClient(uri)
    assert client.get_run(victim_id).info.status == "RUNNING"
    alive = _hold_run(local_store, "alive", "time.sleep(600)")  # its own stage run closes the victim already
    try:
        alive_id = alive.stdout.readline().strip()
        exp = tracking.experiment_id("exp-o")
        host = socket.gethostname()
        reused = client.create_run(exp, tags={"desta.host": host, "desta.pid": str(os.getpid()),
                                              "desta.pid_started": "1.00"}).info.run_id  # our pid, not our start
        remote = client.create_run(exp, tags={"desta.host": host + "-other", "desta.pid": "999999",
                                              "desta.pid_started": "1.00"}).info.run_id

        with tracking.stage_run("next", "exp-o") as nxt:
            pass

        status = {r: client.get_run(r).info.status for r in (victim_id, alive_id, reused, remote, nxt.run_id)}
        assert status == {victim_id: "KILLED", alive_id: "RUNNING", reused: "KILLED", remote: "RUNNING",
                          nxt.run_id: "FINISHED"}
        note = client.get_run(victim_id).data.tags["desta.orphaned"]
        assert note.startswith(f"process {victim.pid} on {host} ended without closing this run")
        assert tracking.close_orphans(exp) == []  # idempotent: nothing left to close
    finally:
        alive.kill()
        alive.wait(timeout=60)


def test_a_resumed_run_is_owned_by_the_resuming_process(local_store: Path) -> None:
    from mlflow.tracking import MlflowClient

    with tracking.stage_run("train", "exp-r") as first:
        pass
    client = MlflowClient(tracking.tracking_uri())
    client.set_tag(first.run_id, "desta.pid", "1")  # as if another process had held it
    with tracking.stage_run("train", "exp-r", run_id=first.run_id):
        pass
    tags = client.get_run(first.run_id).data.tags
    assert tags["desta.pid"] == str(os.getpid()) and tags["desta.host"] == socket.gethostname()
