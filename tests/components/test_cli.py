"""The installed `desta` console script, run as a user would."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.conftest import VENV_BIN

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

