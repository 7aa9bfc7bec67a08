"""The installed `desta` console script, run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO, VENV_BIN

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


def test_temporary_prefect_server_gets_time_to_start() -> None:
    """Prefect's 20 s default failed CI on a busy 2-core machine; the CLI raises it unless the user set one."""
    code = ("import components.cli; from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as t; "
            "print(t.value())")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert res.stdout.split()[-1] == "120", res.stderr
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "45"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert res.stdout.split()[-1] == "45", res.stderr
