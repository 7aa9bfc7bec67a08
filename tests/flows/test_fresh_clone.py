"""What a fresh clone of the repository says about its pipeline: no dvc.lock is committed (a lock names
objects that only the remote of the workspace that ran it holds), so `dvc status` reports every stage
as not run yet and nothing claims to be up to date."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.flows.workspace import BIN, clone, env_for, overlay_working_tree

pytestmark = pytest.mark.integration
STAGES = {"ingest", "seeds", "label", "train", "evaluate"}


def test_a_fresh_clone_has_no_lock_and_every_stage_to_run(tmp_path: Path) -> None:
    ws = clone(tmp_path / "ws")
    overlay_working_tree(ws)
    tracked = subprocess.run(["git", "ls-files", "dvc.lock"], cwd=ws, capture_output=True, text=True, check=True)
    assert tracked.stdout.strip() == "" and not (ws / "dvc.lock").exists()
    res = subprocess.run([str(BIN / "dvc"), "status", "--json"], cwd=ws, env=env_for(ws), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert set(status) == STAGES, status  # every stage listed: none has run in this clone
    for stage in STAGES:
        outs = [o for item in status[stage] if isinstance(item, dict) for o in item.get("changed outs", {}).values()]
        assert outs and set(outs) == {"deleted"}, (stage, status[stage])
