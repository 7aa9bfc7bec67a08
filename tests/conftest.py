"""Shared fixtures: the repo root and the prepared embedded models (real, from the user cache)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Keep the default MLflow store of tests out of the repo's own mlflow.db.
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(os.environ.get('TMPDIR', '/tmp')) / 'desta-tests-mlflow.db'}")
VENV_BIN = REPO / ".venv" / "bin"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def embedded_models() -> dict[str, Path]:
    """Prepare (or reuse from the cache) the embedded models; {name: directory}."""
    from components.embedded.prepare import prepare_all

    infos = prepare_all(REPO / "models", log=lambda m: print(f"[fixture] {m}"))
    return {i["name"]: REPO / "models" / i["name"] for i in infos}
