"""`make run` on the micro pipeline: stack up (idempotent), its client env, the retrain flow with a push to
the stack's S3, and the summary. The Makefile's set-up step is skipped (`make -o setup`): it would
re-check the shared .venv; everything after it is the real recipe."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.components.stack.test_stack import free_ports
from tests.conftest import REPO
from tests.flows.workspace import BIN, env_for, micro_workspace, runs

pytestmark = pytest.mark.integration


def test_make_run_brings_the_stack_up_pushes_and_summarises(tmp_path: Path) -> None:
    ws = micro_workspace(tmp_path / "ws")
    shutil.copy(REPO / "Makefile", ws / "Makefile")
    (ws / ".venv").symlink_to(REPO / ".venv")
    stack_dir, env = tmp_path / "stack", env_for(REPO)
    try:
        for attempt in range(3):  # ports free a moment ago can be taken before the stack binds them: pick again
            s3, mlflow, prefect = free_ports(3)
            env = env_for(REPO, DESTA_STACK_DIR=str(stack_dir), DESTA_STACK_S3_PORT=str(s3),
                          DESTA_STACK_MLFLOW_PORT=str(mlflow), DESTA_STACK_PREFECT_PORT=str(prefect),
                          DESTA_STACK_POOL=f"desta-make-{s3}")
            for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "DESTA_DVC_REMOTE_URL"):
                env.pop(key, None)
            first = subprocess.run(["make", "-o", "setup", "run"], cwd=ws, env=env, capture_output=True, text=True,
                                   timeout=600)
            out = (first.stdout + first.stderr).replace("\n", " ")
            if first.returncode == 0 or "already in use" not in out or attempt == 2:
                break
        assert first.returncode == 0, first.stdout + first.stderr
        assert "prepare ran" in out and "train ran" in out and "pushed: True" in out
        assert re.search(rf"http://127\.0\.0\.1:{mlflow}/#/experiments/\d+/runs/[0-9a-f]{{32}}", out), out
        assert "the local stack is not up" not in out
        second = subprocess.run(["make", "-o", "setup", "run"], cwd=ws, env=env, capture_output=True, text=True, timeout=600)
        out2 = (second.stdout + second.stderr).replace("\n", " ")
        assert second.returncode == 0 and "nothing to do" in out2 and "pushed: True" in out2, out2
        assert runs(ws) == ["prepare", "train"]
        state = (stack_dir / "stack.json").read_text()
        assert f'"port": {s3}' in state
    finally:
        subprocess.run([str(BIN / "desta"), "stack", "down", "--data-dir", str(stack_dir)], env=env, timeout=120)
