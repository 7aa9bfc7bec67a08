"""Shared fixtures: the repo root and the prepared embedded models (real, from the user cache)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"

# A shell that ran `eval "$(desta stack env)"`, or exports a profile, a remote or stack ports, must not
# steer the tests (nor point them at the user's servers): each test sets what it needs itself.
_SHELL_ENV = ("MLFLOW_", "PREFECT_API_", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
              "AWS_SESSION_TOKEN", "AWS_PROFILE", "DESTA_PROFILE", "DESTA_PARAMS", "DESTA_DVC_", "DESTA_S3_",
              "DESTA_STACK_", "DESTA_TASK_", "DESTA_PARENT_RUN_ID", "DESTA_STAGE_", "DESTA_PUSH_")
for _key in [k for k in os.environ if k.startswith(_SHELL_ENV)]:
    del os.environ[_key]
# This session's default MLflow store: its own, out of the repo's mlflow.db, removed at the end.
SESSION_DIR = Path(tempfile.mkdtemp(prefix="desta-tests-"))
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{SESSION_DIR / 'mlflow.db'}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(SESSION_DIR, ignore_errors=True)

# `make test` runs two pytest-xdist workers (one per core here). Each worker, and what it starts, gets one
# thread per torch op: two processes with a thread per core each spin against each other (on 2 cores the
# evaluate one-context-pass test took 196 s beside the other worker that way, 59 s with one thread each).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# The longest modules first (whole-pipeline runs in tests/flows, then training and evaluation), so the
# two workers, each taking a module at a time, finish together instead of one running the last long one alone.
LONGEST_FIRST = ("tests/flows/", "tests/components/evaluate/", "tests/components/train/", "tests/components/stack/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.path.relative_to(REPO).as_posix()
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: the order within a group (collection or --random-order) stays

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
