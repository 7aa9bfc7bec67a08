"""The installed `desta` console script, run as a user would."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import VENV_BIN
from tests.flows.workspace import refused_port

STAGES = ["ingest", "seeds", "label", "train", "evaluate", "score", "retrain", "lineage", "stack"]


def desta(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "desta"), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_help_lists_all_nine_stages() -> None:
    res = desta("--help")
    assert res.returncode == 0, res.stderr
    for name in STAGES:
        assert f" {name} " in res.stdout, name


def test_lineage_needs_a_model_version_or_run() -> None:
    res = desta("lineage")
    assert res.returncode == 2
    assert "MODEL_VERSION or --run-id" in res.stderr


def test_config_names_bad_key(repo: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["tiny"]["train"]["lr"] = -1
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    res = desta("config", "--params", str(bad))
    assert res.returncode == 1
    assert "tiny.train.lr" in res.stderr


def test_config_prints_active_profile(repo: Path) -> None:
    res = desta("config", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert '"profile": "tiny"' in res.stdout



@pytest.mark.parametrize("stage", ["ingest", "seeds", "label", "train", "evaluate", "lineage"])
def test_a_dead_tracking_server_stops_a_stage_before_any_work(stage: str, tmp_path: Path, repo: Path) -> None:
    """MLflow down (a held port that refuses): one line naming it, exit 1, nothing written — not an hour of
    work and then a traceback (or, for lineage, a "broken link" that is not one)."""
    out = tmp_path / "out"
    args = ["lineage", "champion"] if stage == "lineage" else [stage, "--params", str(repo / "params.yaml"), "--out", str(out)]
    with refused_port() as port:
        res = subprocess.run([str(VENV_BIN / "desta"), *args], capture_output=True, text=True, cwd=tmp_path,
                             timeout=120, env={**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
                                               "COLUMNS": "400"})
    assert res.returncode == 1, res.stderr
    assert res.stderr.count("error:") == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"MLflow tracking server at http://127.0.0.1:{port} is unreachable" in res.stderr
    assert ("--no-track" in res.stderr) == (stage != "lineage") and "BROKEN" not in res.stdout
    assert not out.exists()
