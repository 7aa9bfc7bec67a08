"""Real services for lineage tests: SeaweedFS S3 + the MLflow tracking server (S3 artifacts), started with the
stack's own service definitions on free ports in a tmp data dir, and a toy DVC pipeline pushed to S3."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.stack import objectstore, procs
from components.stack.config import StackConfig
from components.stack.env import client_env
from components.stack.health import wait_healthy
from components.stack.manager import ensure_buckets
from components.stack.services import services
from tests.components.stack.test_stack import free_ports
from tests.conftest import VENV_BIN

TOY = Path(__file__).with_name("toy_stage.py")
TOY_DVC_YAML = """\
stages:
  ingest:
    cmd: {py} {toy} ingest
    params: [toy]
    outs: [data/ingest/shards, data/ingest/manifest.jsonl, data/ingest/corpus_card.md]
  seeds:
    cmd: {py} {toy} seeds
    deps: [data/ingest/shards, data/ingest/manifest.jsonl]
    outs: [data/seeds/shards]
  label:
    cmd: {py} {toy} label
    deps: [data/seeds/shards]
    outs: [data/label/shards]
  train:
    cmd: {py} {toy} train
    deps: [data/label/shards, data/ingest/shards]
    outs: [data/train/model]
  evaluate:
    cmd: {py} {toy} evaluate
    deps: [data/train/model, data/seeds/shards]
    outs: [data/evaluate/predictions.jsonl]
"""


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd}: {res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def init_repo(root: Path, env: dict[str, str]) -> None:
    """git + DVC repo (no analytics), committed, so stages have a git commit to record."""
    root.mkdir(parents=True, exist_ok=True)
    run(["git", "init", "-q"], root, env)
    run([str(VENV_BIN / "dvc"), "init", "-q"], root, env)
    run([str(VENV_BIN / "dvc"), "config", "core.analytics", "false"], root, env)


def git_commit_all(root: Path, env: dict[str, str], message: str) -> None:
    run(["git", "add", "-A"], root, env)  # the tmp toy repo only
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", message], root, env)


def _start(cfg: StackConfig, started: list[subprocess.Popen]) -> bool:
    """S3 and MLflow (Prefect is not needed here); False when a port was taken, any other failure fails."""
    for svc in services(cfg)[:2]:
        proc = procs.spawn(svc.argv, svc.env, svc.log, cfg.data_dir)
        started.append(proc)
        ok = wait_healthy(lambda svc=svc: svc.healthy(None), 120, lambda proc=proc: proc.poll() is None)
        this_start = svc.log.read_text().rsplit("\n=== ", 1)[-1]  # spawn appends a header per start
        if not ok and any(m in this_start for m in ("already in use", "Port allocation failed")):
            return False
        assert ok, f"{svc.name} not healthy: {svc.log.read_text()[-2000:]}"
        if svc.name == "s3":
            ensure_buckets(cfg)
    return True


@pytest.fixture(scope="session")
def services_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """SeaweedFS S3 and MLflow (sqlite + s3:// artifacts) on free loopback ports; stopped at the end."""
    data_dir = tmp_path_factory.mktemp("lineage-stack")
    objectstore.prepare(data_dir)
    started: list[subprocess.Popen] = []
    t0 = time.perf_counter()
    try:
        for attempt in range(3):  # ports free a moment ago can be taken before a service binds them: pick again
            s3_port, mlflow_port, prefect_port = free_ports(3)
            cfg = StackConfig.resolve(data_dir=data_dir, s3_port=s3_port, mlflow_port=mlflow_port,
                                      prefect_port=prefect_port, dvc_bucket="lineage-dvc",
                                      mlflow_bucket="lineage-mlflow", pool="unused")
            if _start(cfg, started) or attempt == 2:
                break
            for proc in started:
                procs.terminate(proc.pid, 15)
            started.clear()
        print(f"[lineage] s3 + mlflow up in {time.perf_counter() - t0:.1f} s")
        env = {**os.environ, **client_env(cfg), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               "DESTA_LINEAGE_STRICT": "1", "DO_NOT_TRACK": "1", "GIT_TERMINAL_PROMPT": "0"}
        env.pop("DESTA_PARENT_RUN_ID", None)
        yield {"cfg": cfg, "env": env}
    finally:
        for proc in started:
            procs.terminate(proc.pid, 15)
        assert all(not procs.alive(p.pid) for p in started)


def build_toy_pipeline(root: Path, env: dict[str, str], cfg: StackConfig) -> dict[str, Any]:
    """The toy ingest -> seeds -> label -> train -> evaluate pipeline in a new repo at `root`, reproduced with
    DVC (each stage logs to MLflow, train registers a version) and pushed to the stack's DVC bucket."""
    import json

    init_repo(root, env)
    (root / "dvc.yaml").write_text(TOY_DVC_YAML.format(py=sys.executable, toy=TOY))
    (root / "params.yaml").write_text("toy:\n  clips: 5\n")
    (root / ".gitignore").write_text("/data\n")
    run([str(VENV_BIN / "dvc"), "remote", "add", "-d", "stack", env["DESTA_DVC_REMOTE_URL"]], root, env)
    run([str(VENV_BIN / "dvc"), "remote", "modify", "stack", "endpointurl", cfg.s3_url], root, env)
    git_commit_all(root, env, "toy pipeline")
    t0 = time.perf_counter()
    run([str(VENV_BIN / "dvc"), "repro"], root, env, timeout=600)
    repro_s = time.perf_counter() - t0
    run([str(VENV_BIN / "dvc"), "push"], root, env)
    print(f"[lineage] toy pipeline repro in {repro_s:.1f} s, pushed")
    info = json.loads((root / "data/train/run.json").read_text())
    info["evaluate_run_id"] = (root / "data/evaluate/run_id").read_text()
    return {"root": root, "env": env, "cfg": cfg, **info}


@pytest.fixture(scope="session")
def toy_pipeline(services_up: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The toy pipeline, pushed to the session's S3 bucket."""
    return build_toy_pipeline(tmp_path_factory.mktemp("toy-repo"), services_up["env"], services_up["cfg"])
