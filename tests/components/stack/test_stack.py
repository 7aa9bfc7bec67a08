"""The local stack for real: SeaweedFS S3, MLflow server and Prefect server + worker on free loopback ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from components.stack import procs
from components.stack.config import HOST, StackConfig
from components.stack.env import client_env
from components.stack.health import http_json, http_ok
from components.stack.objectstore import free_ports  # noqa: F401 -- also what the other stack tests import from here
from components.stack.services import WORKER_NAME
from tests.conftest import REPO

pytestmark = pytest.mark.integration
SERVICES = ["s3", "mlflow", "prefect", "worker"]


def stack_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """The stack CLI in a fresh process, as a user runs it (the services must outlive it)."""
    return subprocess.run(
        [sys.executable, "-m", "components.stack.cli", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )


def up_args(data_dir: Path, ports: list[int], pool: str, *extra: str) -> list[str]:
    s3, mlflow, prefect = ports
    return ["up", "--data-dir", str(data_dir), "--s3-port", str(s3), "--mlflow-port", str(mlflow),
            "--prefect-port", str(prefect), "--pool", pool, *extra]


def up_on_free_ports(data_dir: Path, pool: str, tries: int = 3) -> tuple[list[int], subprocess.CompletedProcess]:
    """`stack up` on ports free a moment ago; another process may take one before a service binds it
    (a port picked, released, then used): then again on other ports."""
    for attempt in range(1, tries + 1):
        ports = free_ports(3)
        res = stack_cli(*up_args(data_dir, ports, pool))
        if res.returncode == 0 or "already in use" not in res.stderr or attempt == tries:
            return ports, res
    raise AssertionError("unreachable")


def stack_processes(ports: list[int], pool: str) -> list[tuple[int, list[str]]]:
    """Live weed/mlflow/prefect/uvicorn processes whose argv names one of these ports or this pool."""
    marks = {str(p) for p in ports} | {pool}
    found = []
    for entry in Path("/proc").iterdir():
        cmd = procs.cmdline(int(entry.name)) if entry.name.isdigit() else None
        if not cmd or not procs.alive(int(entry.name)):
            continue
        ours = any(Path(c).name in {"weed", "mlflow", "prefect", "uvicorn"} for c in cmd[:3])
        if ours and marks & set(cmd):
            found.append((int(entry.name), cmd))
    return found


def group_members(leaders: list[int]) -> list[int]:
    """Every process in the process groups led by `leaders` (e.g. mlflow's uvicorn child)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pgid = int(stat.read_text().rsplit(")", 1)[1].split()[2])
        except (OSError, ValueError):
            continue
        if pgid in leaders:
            members.append(int(stat.parent.name))
    return members


@contextmanager
def running_stack(data_dir: Path, pool: str) -> Iterator[dict[str, Any]]:
    """A real `desta stack up` in `data_dir`, taken down (every process checked gone) at the end."""
    t0 = time.perf_counter()
    ports, res = up_on_free_ports(data_dir, pool)
    seconds = time.perf_counter() - t0
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        state = json.loads((data_dir / "stack.json").read_text())
        print(f"[stack] up in {seconds:.1f} s")
        yield {"dir": data_dir, "ports": ports, "pool": pool, "state": state, "cfg": StackConfig.from_dict(state["config"])}
    finally:
        stack_cli("down", "--data-dir", str(data_dir))  # idempotent: a no-op after a test's own `down`
        assert not stack_processes(ports, pool)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The module's stack; no test takes it down (test_down has its own), so any test order works."""
    with running_stack(tmp_path_factory.mktemp("stack") / "data", f"desta-test-{os.getpid()}") as up:
        yield up


def test_state_file_names_every_service(stack: dict[str, Any]) -> None:
    services = stack["state"]["services"]
    assert list(services) == SERVICES
    for name, entry in services.items():
        assert procs.alive(entry["pid"]), name
        assert Path(entry["log"]).is_file() and entry["url"].startswith(f"http://{HOST}:")
        assert {"pid", "port", "url", "log", "started"} <= entry.keys()


def s3_client(cfg: StackConfig) -> Any:
    """boto3 against the stack, configured only from the env a client of the stack would export."""
    import boto3

    env = {**os.environ, **client_env(cfg)}
    return boto3.client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION"),
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def test_buckets_exist(stack: dict[str, Any]) -> None:
    names = {b["Name"] for b in s3_client(stack["cfg"]).list_buckets()["Buckets"]}
    assert {"desta-dvc", "desta-mlflow"} <= names


def test_mlflow_artifact_lands_in_s3(stack: dict[str, Any], tmp_path: Path) -> None:
    import mlflow

    cfg: StackConfig = stack["cfg"]
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(cfg.mlflow_url)
    try:
        exp = mlflow.MlflowClient().create_experiment("stack-test")
        artifact = tmp_path / "hello.txt"
        artifact.write_text("through the tracking server into S3\n")
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_artifact(str(artifact))
            mlflow.log_metric("x", 1.0)
    finally:
        mlflow.set_tracking_uri(previous)
    s3 = s3_client(cfg)
    key = f"mlartifacts/{exp}/{run.info.run_id}/artifacts/hello.txt"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="desta-mlflow").get("Contents", [])]
    assert key in keys, keys
    body = s3.get_object(Bucket="desta-mlflow", Key=key)["Body"].read()
    assert body == artifact.read_bytes()


def test_prefect_healthy_and_worker_polling(stack: dict[str, Any]) -> None:
    api = stack["cfg"].prefect_api_url
    assert http_ok(f"{api}/health")
    pool = http_json(f"{api}/work_pools/{stack['pool']}")
    assert pool["type"] == "process"
    workers = http_json(f"{api}/work_pools/{stack['pool']}/workers/filter", body={})
    assert [(w["name"], w["status"]) for w in workers] == [(WORKER_NAME, "ONLINE")]


def test_status_reports_all_up(stack: dict[str, Any]) -> None:
    res = stack_cli("status", "--data-dir", str(stack["dir"]))
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.split()[:1] and ln.split()[0] in SERVICES]
    assert len(lines) == 4 and all("running" in ln and "healthy" in ln for ln in lines), res.stdout
    assert "SeaweedFS 4.48" in res.stdout and "--purge" in res.stdout  # the object store and its durability are stated


def test_up_again_is_a_noop(stack: dict[str, Any]) -> None:
    res = stack_cli(*up_args(stack["dir"], stack["ports"], stack["pool"]))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "already up" in res.stdout
    state = json.loads((stack["dir"] / "stack.json").read_text())
    assert {n: e["pid"] for n, e in state["services"].items()} == {n: e["pid"] for n, e in stack["state"]["services"].items()}


def test_env_prints_exports(stack: dict[str, Any]) -> None:
    res = stack_cli("env", "--data-dir", str(stack["dir"]))
    assert res.returncode == 0, res.stderr
    cfg: StackConfig = stack["cfg"]
    for line in (f"export MLFLOW_TRACKING_URI={cfg.mlflow_url}", f"export PREFECT_API_URL={cfg.prefect_api_url}",
                 f"export AWS_ENDPOINT_URL={cfg.s3_url}", f"export MLFLOW_S3_ENDPOINT_URL={cfg.s3_url}"):
        assert line in res.stdout.splitlines(), res.stdout


def test_down_stops_every_process(tmp_path: Path) -> None:
    with running_stack(tmp_path / "data", f"desta-test-down-{os.getpid()}") as own:
        leaders = [e["pid"] for e in own["state"]["services"].values()]
        members = group_members(leaders)
        assert set(leaders) <= set(members) and len(members) > len(leaders)  # mlflow's uvicorn child too
        res = stack_cli("down", "--data-dir", str(own["dir"]))
        assert res.returncode == 0, res.stdout + res.stderr
        assert [p for p in members if procs.alive(p)] == []
        assert not (own["dir"] / "stack.json").exists()
        assert stack_cli("status", "--data-dir", str(own["dir"])).returncode != 0
        again = stack_cli("down", "--data-dir", str(own["dir"]))
        assert again.returncode == 0 and "not up" in again.stdout


def test_taken_port_names_the_service_and_starts_nothing(tmp_path: Path) -> None:
    ports, pool = free_ports(3), "desta-test-port"
    with socket.socket() as held:
        held.bind((HOST, ports[1]))  # the MLflow port
        held.listen()
        res = stack_cli(*up_args(tmp_path, ports, pool))
    assert res.returncode == 1
    assert "mlflow" in res.stderr and str(ports[1]) in res.stderr and "already in use" in res.stderr
    assert not (tmp_path / "stack.json").exists()
    assert stack_processes(ports, pool) == []


def test_failing_service_is_named_with_its_log_and_the_rest_stopped(tmp_path: Path) -> None:
    # A corrupt Prefect database: the server exits during start-up, after S3 and MLflow were started.
    (tmp_path / "prefect").mkdir()
    (tmp_path / "prefect" / "prefect.db").write_bytes(b"not a sqlite database" * 100)
    ports, pool = free_ports(3), "desta-test-fail"
    res = stack_cli(*up_args(tmp_path, ports, pool))
    assert res.returncode == 1
    assert "prefect (Prefect server) exited" in res.stderr and str(tmp_path / "logs" / "prefect.log") in res.stderr
    assert "stopped s3" in res.stderr and "stopped mlflow" in res.stderr
    assert not (tmp_path / "stack.json").exists()
    assert stack_processes(ports, pool) == []


def test_down_leaves_a_reused_pid_alone(tmp_path: Path) -> None:
    # A state file whose pid now belongs to an unrelated process (pid reuse): `down` must not signal it.
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        state = {
            "version": 1, "complete": True,
            "config": StackConfig.resolve(data_dir=tmp_path).as_dict(),
            "services": {"s3": {"pid": other.pid, "port": 1, "url": "", "log": "", "started": "",
                                "argv": ["/x/weed", "mini", "-s3.port=1"], "start_ticks": procs.start_ticks(other.pid)}},
        }
        (tmp_path / "stack.json").write_text(json.dumps(state))
        res = stack_cli("down", "--data-dir", str(tmp_path))
        assert res.returncode == 0, res.stderr
        assert "left alone" in res.stdout and other.poll() is None
        assert not (tmp_path / "stack.json").exists()
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()


def test_config_options_beat_env_beat_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DESTA_STACK_S3_PORT", "29000")
    monkeypatch.setenv("DESTA_STACK_POOL", "from-env")
    cfg = StackConfig.resolve(data_dir=tmp_path, pool="from-option")
    assert (cfg.s3_port, cfg.mlflow_port, cfg.pool, cfg.dvc_bucket) == (29000, 15000, "from-option", "desta-dvc")
    assert StackConfig.from_dict(cfg.as_dict()) == cfg
    monkeypatch.setenv("DESTA_STACK_MLFLOW_PORT", "five")
    with pytest.raises(ValueError, match="DESTA_STACK_MLFLOW_PORT"):
        StackConfig.resolve(data_dir=tmp_path)
    with pytest.raises(ValueError, match="distinct"):
        StackConfig.resolve(data_dir=tmp_path, mlflow_port=29000)


def test_worker_runs_deployments_in_the_repo_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # prefect.yaml's pull step is set_working_directory("{{ $DESTA_REPO_DIR }}"), resolved in the worker's env.
    from components.stack.objectstore import prepare
    from components.stack.services import services

    cfg = StackConfig.resolve(data_dir=tmp_path)
    prepare(tmp_path)  # the services' env carries the stack's S3 keys
    monkeypatch.delenv("DESTA_REPO_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    worker = {s.name: s for s in services(cfg)}["worker"]
    assert worker.env["DESTA_REPO_DIR"] == str(tmp_path.resolve())
    monkeypatch.setenv("DESTA_REPO_DIR", str(REPO))
    assert {s.name: s for s in services(cfg)}["worker"].env["DESTA_REPO_DIR"] == str(REPO)


def test_an_internal_s3_port_taken_meanwhile_starts_again_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # weed's internal ports are picked free just before it starts: another process takes one in between.
    from components.stack import manager, objectstore

    held = socket.socket()
    held.bind((HOST, 0))
    held.listen()
    real, calls = objectstore.free_ports, []

    def racy(n: int) -> list[int]:
        ports = real(n)
        calls.append(n)
        return [ports[0], held.getsockname()[1], *ports[2:]] if len(calls) == 1 else ports  # the master port

    monkeypatch.setattr(objectstore, "free_ports", racy)
    ports, lines = free_ports(3), []
    cfg = StackConfig.resolve(data_dir=tmp_path, s3_port=ports[0], mlflow_port=ports[1], prefect_port=ports[2],
                              pool="desta-test-race")
    try:
        state, started = manager.up(cfg, log=lines.append)
        assert started and all(procs.alive(e["pid"]) for e in state["services"].values())
        assert any("internal port was taken meanwhile" in ln for ln in lines), lines
        assert f"={held.getsockname()[1]}" not in " ".join(state["services"]["s3"]["argv"])
    finally:
        manager.down(tmp_path, log=lines.append)
        held.close()
    assert stack_processes(ports, "desta-test-race") == []
