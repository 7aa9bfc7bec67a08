"""Flow settings from the environment: defaults, and bad values named by their variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flows.settings import FlowSettings
from tests.conftest import REPO


def test_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DESTA_TASK_RUNNER", "DESTA_TASK_WORKERS", "DESTA_TASK_CLUSTER", "DESTA_STAGE_RETRIES",
                "DESTA_PUSH_RETRIES", "DESTA_PUSH_RETRY_DELAYS"):
        monkeypatch.delenv(var, raising=False)
    s = FlowSettings.from_env()
    assert (s.task_runner, s.task_workers, s.stage_retries, s.push_retries, s.push_retry_delays) == \
        ("threads", 2, 2, 3, [5.0, 15.0, 45.0])
    monkeypatch.setenv("DESTA_PUSH_RETRY_DELAYS", "1,2")
    monkeypatch.setenv("DESTA_TASK_RUNNER", "dask")
    monkeypatch.setenv("DESTA_TASK_CLUSTER", "tcp://10.0.0.1:8786")
    s = FlowSettings.from_env()
    assert (s.push_retry_delays, s.task_runner, s.cluster_address) == ([1.0, 2.0], "dask", "tcp://10.0.0.1:8786")


@pytest.mark.parametrize(("var", "value"), [("DESTA_PUSH_RETRIES", "many"), ("DESTA_STAGE_RETRIES", "-1"),
                                            ("DESTA_PUSH_RETRY_DELAYS", "5,soon")])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=var):
        FlowSettings.from_env()


def test_temporary_prefect_server_gets_time_to_start() -> None:
    """Prefect's 20 s default failed CI on a busy 2-core machine; the flows package raises it (before
    Prefect reads its settings) unless the user set one."""
    code = ("import flows.retrain; from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as t; "
            "print(t.value())")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert res.stdout.split()[-1] == "120", res.stderr
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "45"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert res.stdout.split()[-1] == "45", res.stderr
