"""infra/compose.yaml through two real compose parsers, no container engine needed: podman-compose
(`--dry-run … config`: interpolation, `${VAR:?}` checks, merge keys) and the compose-spec bindings
(Rust `compose_spec` parser + the specification's models) on its output. Also what the file promises:
credentials only from the environment, loopback-only ports, versions that match this venv."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

COMPOSE = REPO / "infra" / "compose.yaml"
SECRETS = {"MINIO_ROOT_USER": "team-user", "MINIO_ROOT_PASSWORD": "team-password-1", "POSTGRES_PASSWORD": "pg-password-2"}


def config(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run([sys.executable, "-m", "podman_compose", "--dry-run", "-f", str(COMPOSE), "config"],
                          env={**clean, **env}, capture_output=True, text=True, timeout=120, cwd=COMPOSE.parent)


@pytest.fixture(scope="module")
def merged() -> dict[str, Any]:
    res = config(SECRETS)
    assert res.returncode == 0, res.stderr[-2000:]
    return {"text": res.stdout, "spec": yaml.safe_load(res.stdout)}


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_each_credential_is_required(missing: str) -> None:
    res = config({k: v for k, v in SECRETS.items() if k != missing})
    assert res.returncode != 0 and f"required variable {missing} is missing a value" in res.stderr, res.stderr[-2000:]


def test_the_compose_spec_parser_accepts_it(merged: dict[str, Any]) -> None:
    import compose_spec

    parsed = compose_spec.PyCompose.from_yaml(merged["text"])
    parsed.validate()
    spec = parsed.to_spec()
    assert sorted(parsed.service_names()) == ["buckets", "minio", "mlflow", "postgres", "prefect-server", "prefect-worker"]
    assert set(spec.volumes) == {"minio-data", "postgres-data"}


def test_credentials_come_from_the_environment_only(merged: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    assert not any(v in text for v in SECRETS.values())
    services = merged["spec"]["services"]
    assert services["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == SECRETS["MINIO_ROOT_PASSWORD"]
    assert services["prefect-worker"]["environment"]["AWS_SECRET_ACCESS_KEY"] == SECRETS["MINIO_ROOT_PASSWORD"]
    assert services["mlflow"]["environment"]["POSTGRES_PASSWORD"] == SECRETS["POSTGRES_PASSWORD"]


def test_ports_are_published_on_loopback_only(merged: dict[str, Any]) -> None:
    ports = [str(p) for svc in merged["spec"]["services"].values() for p in svc.get("ports", [])]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports), ports


def test_versions_match_this_venv(merged: dict[str, Any]) -> None:
    services = merged["spec"]["services"]
    assert services["prefect-server"]["image"].startswith(f"prefecthq/prefect:{version('prefect')}-")
    assert f"mlflow=={version('mlflow')}" in services["mlflow"]["build"]["dockerfile_inline"]
    worker = services["prefect-worker"]
    assert "-c constraints.txt" in worker["build"]["dockerfile_inline"] and Path(REPO / "constraints.txt").is_file()
    env = worker["environment"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and env["DESTA_DVC_REMOTE_URL"] == "s3://desta-dvc"
