"""No-op `desta retrain` (every stage up to date) against a bare `dvc status` in the same workspace.

Workspace: the micro pipeline of tests/flows (2 stages, real DVC); the figure is dominated by process
start-up and `dvc status`, not by the stages. Measured: the fast path (default), the flow on a running
Prefect server (`--always-flow` with PREFECT_API_URL), and the flow on Prefect's temporary server
(`--always-flow`, no PREFECT_API_URL: what every no-op cost before the fast path).
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.flows.servers import prefect_server
from tests.flows.workspace import BIN, env_for, micro_workspace

pytestmark = pytest.mark.bench
REPEAT = 5


def timed(argv: list[str], cwd: Path, env: dict[str, str], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        out.append(time.perf_counter() - t0)
        assert res.returncode == 0, res.stdout + res.stderr
    return out


def test_noop_retrain_vs_dvc_status(tmp_path: Path, record) -> None:
    ws = micro_workspace(tmp_path / "ws")
    env = env_for(REPO, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", PREFECT_HOME=str(tmp_path / "ph"))
    env.pop("PREFECT_API_URL", None)
    env.pop("DESTA_DVC_REMOTE_URL", None)
    desta = [str(BIN / "desta"), "retrain", "--no-push"]
    first = subprocess.run(desta, cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0 and "prepare ran" in first.stderr, first.stderr

    baseline = timed([str(BIN / "dvc"), "status", "--json"], ws, env, REPEAT)
    fast = timed(desta, ws, env, REPEAT)
    temporary = timed([*desta, "--always-flow"], ws, env, 2)
    home = tmp_path / "prefect"
    home.mkdir()
    with prefect_server(home, env) as penv:
        served = timed([*desta, "--always-flow"], ws, {**env, **penv}, REPEAT)
    import_cli = timed([str(BIN / "python"), "-c", "import flows.cli"], ws, env, REPEAT)  # the `desta` entry point

    def fig(xs: list[float]) -> dict:
        med = statistics.median(xs)
        return {"median_s": round(med, 2), "runs_s": [round(x, 2) for x in xs],
                "x_dvc_status": round(med / statistics.median(baseline), 1)}

    figures = {
        "workspace": "micro pipeline (2 DVC stages), every stage up to date",
        "baseline_dvc_status": fig(baseline),
        "noop_fast_path": fig(fast),
        "always_flow_running_server": fig(served),
        "always_flow_temporary_server": fig(temporary),
        "import_desta_cli": fig(import_cli),
        "target_s": 5.0,
    }
    record("noop_retrain", figures)
    assert statistics.median(fast) <= 5.0, figures
