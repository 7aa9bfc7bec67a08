"""Faults of `desta retrain` on the micro pipeline, against real services: a dead S3 remote (then a
real SeaweedFS server on the same port), a dead MLflow server, and a SIGKILL in the middle of a stage.

Each run is a real `desta retrain` process with the real flow on a dedicated Prefect server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.stack import objectstore, procs
from components.stack.config import StackConfig
from components.stack.manager import ensure_buckets
from components.stack.services import executable
from tests.conftest import REPO
from tests.flows.servers import mlflow_server, on_free_port, prefect_server, process
from tests.flows.workspace import BIN, env_for, micro_corpus, micro_workspace, refused_port, runs

pytestmark = pytest.mark.integration
BUCKET = "desta-dvc-faults"


@pytest.fixture(scope="module")
def prefect_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("prefect")
    with prefect_server(home, env_for(REPO)) as penv:
        yield penv


def retrain(ws: Path, env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "desta"), "retrain", *args], cwd=ws, env=env, capture_output=True, text=True,
                          timeout=timeout)


def base_env(ws: Path, penv: dict[str, str], **extra: str) -> dict[str, str]:
    env = env_for(REPO, **{**penv, "MLFLOW_TRACKING_URI": f"sqlite:///{ws / 'mlflow.db'}", **extra})
    for key in ("DESTA_DVC_REMOTE_URL", "DESTA_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        if key not in extra:
            env.pop(key, None)
    return env


def s3_client(endpoint: str, keys: dict[str, str]) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"], aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"])


def s3_keys(endpoint: str, keys: dict[str, str]) -> list[str]:
    return [o["Key"] for o in s3_client(endpoint, keys).list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_dead_s3_remote_retries_names_it_and_the_next_run_pushes(tmp_path: Path, prefect_env: dict[str, str]) -> None:
    ws = micro_workspace(tmp_path / "ws")
    with refused_port() as port:  # held while S3 is down: nothing else can answer there
        endpoint = f"http://127.0.0.1:{port}"
        store = StackConfig.resolve(data_dir=tmp_path / "store", s3_port=port, dvc_bucket=BUCKET,
                                    mlflow_bucket=f"{BUCKET}-ml")
        keys = objectstore.prepare(store.data_dir)  # the server that comes back later accepts these only
        env = base_env(ws, prefect_env, **keys, AWS_DEFAULT_REGION="us-east-1", DESTA_DVC_REMOTE_URL=f"s3://{BUCKET}",
                       DESTA_S3_ENDPOINT_URL=endpoint, DESTA_PUSH_RETRIES="2", DESTA_PUSH_RETRY_DELAYS="0.5")
        res = retrain(ws, env)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert f"S3 endpoint {endpoint} (DVC remote 'stack' s3://{BUCKET}) is unreachable" in out, out
    assert "Traceback" not in out and out.count("error:") == 1, out
    assert "Retry 1/2" in out and "Retry 2/2" in out, out  # Prefect retried the push task twice
    assert runs(ws) == ["prepare", "train"]  # the stages themselves finished and are recorded in dvc.lock

    # S3 comes back (a real SeaweedFS on the same port, its bucket made at start): the next run runs no stage
    # and pushes.
    weed = objectstore.argv(executable("weed"), store, store.data_dir / objectstore.IDENTITIES_NAME)
    with process(list(weed), dict(os.environ), tmp_path / "s3.log", tmp_path, health=f"{endpoint}/healthz"):
        ensure_buckets(store)  # answers once the bucket is there
        again = retrain(ws, env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "pushed: True" in again.stderr.replace("\n", " "), again.stderr
        assert runs(ws) == ["prepare", "train"]
        pushed = s3_keys(endpoint, keys)
    assert len(pushed) == 2 and all(k.startswith("files/md5/") for k in pushed), pushed  # prepare.json + train.json


# SeaweedFS with its data dir on a real tmpfs in a private mount namespace (`unshare`): the store's own disk
# fills during a push. Touching $GROW makes the tmpfs large (the "freed space" a user would make).
FULL_STORE = """mount -t tmpfs -o size=24m tmpfs "$STORE_DIR" || exit 1
"$@" & pid=$!
trap 'kill $pid' TERM
while kill -0 $pid 2>/dev/null; do
  if [ -e "$GROW" ]; then mount -o remount,size=256m "$STORE_DIR" && rm -f "$GROW"; fi
  sleep 0.2
done"""


def test_full_object_store_disk_is_one_line_and_the_next_run_pushes(tmp_path: Path, prefect_env: dict[str, str]) -> None:
    ws = micro_workspace(tmp_path / "ws")
    grow = tmp_path / "grow"
    store: dict[str, StackConfig] = {}

    def start(port: int) -> subprocess.Popen:
        cfg = store["cfg"] = StackConfig.resolve(data_dir=tmp_path / "store", s3_port=port, dvc_bucket=BUCKET,
                                                 mlflow_bucket=f"{BUCKET}-ml")
        objectstore.data_path(cfg).mkdir(parents=True, exist_ok=True)
        weed = objectstore.argv(executable("weed"), cfg, cfg.data_dir / objectstore.IDENTITIES_NAME)
        env = {**os.environ, "STORE_DIR": str(objectstore.data_path(cfg)), "GROW": str(grow)}
        return procs.spawn(["unshare", "--mount", "--map-root-user", "sh", "-c", FULL_STORE, "sh", *weed], env,
                           tmp_path / "s3.log", cwd=tmp_path)

    keys = objectstore.prepare(tmp_path / "store")
    with on_free_port(start, lambda port: f"http://127.0.0.1:{port}/healthz", tmp_path / "s3.log") as (port, _):
        endpoint = f"http://127.0.0.1:{port}"
        ensure_buckets(store["cfg"])
        # prepare.json ~21 MB, train.json holds it again: more than the store's 24 MB disk takes
        env = base_env(ws, prefect_env, **keys, AWS_DEFAULT_REGION="us-east-1", DESTA_DVC_REMOTE_URL=f"s3://{BUCKET}",
                       DESTA_S3_ENDPOINT_URL=endpoint, DESTA_PUSH_RETRIES="1", DESTA_PUSH_RETRY_DELAYS="0.5",
                       STAGE_BYTES_PREPARE=str(16 * 2**20))
        res = retrain(ws, env)
        out = res.stdout + res.stderr
        assert res.returncode == 1, out
        assert f"pushing to the DVC remote 'stack' s3://{BUCKET} (S3 endpoint {endpoint}) failed" in out, out
        assert "the S3 server could not store" in out and "Traceback" not in out and out.count("error:") == 1, out
        print(f"[full store] {[line for line in out.splitlines() if line.startswith('error:')][0][:400]}")
        assert runs(ws) == ["prepare", "train"]  # the stages finished; only the push failed
        _objects_whole(endpoint, keys)  # what the store holds is whole: content-addressed keys match their bytes

        grow.touch()  # space freed on the store's disk
        deadline = time.monotonic() + 30
        while grow.exists():
            assert time.monotonic() < deadline, "the store's tmpfs was not grown"
            time.sleep(0.2)
        again = retrain(ws, env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "pushed: True" in again.stderr.replace("\n", " "), again.stderr
        assert runs(ws) == ["prepare", "train"]  # no stage ran again
        assert len(_objects_whole(endpoint, keys)) == 2
        status = subprocess.run([str(BIN / "dvc"), "status", "-c"], cwd=ws, env=env, capture_output=True, text=True)
        assert status.returncode == 0 and "in sync" in status.stdout, status.stdout + status.stderr


def _objects_whole(endpoint: str, keys: dict[str, str]) -> list[str]:
    """The DVC objects in the bucket, each checked: its bytes' md5 is the name DVC gave it."""
    import hashlib

    s3 = s3_client(endpoint, keys)
    names = s3_keys(endpoint, keys)
    for name in names:
        body = s3.get_object(Bucket=BUCKET, Key=name)["Body"].read()
        assert name.replace("/", "").endswith(hashlib.md5(body).hexdigest()), name
    return names


def test_dead_mlflow_server_stops_before_any_stage(tmp_path: Path, prefect_env: dict[str, str]) -> None:
    ws = micro_workspace(tmp_path / "ws")
    params_before = (ws / "params.yaml").read_text()
    with refused_port() as port:
        dead = f"http://127.0.0.1:{port}"
        res = retrain(ws, base_env(ws, prefect_env, MLFLOW_TRACKING_URI=dead), "-S", "tiny.train.max_steps=5")
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert f"MLflow tracking server at {dead} is unreachable" in out, out
    assert "no stage was started" in out
    assert runs(ws) == [] and not (ws / "dvc.lock").exists()  # no stage work, nothing recorded
    assert (ws / "params.yaml").read_text() == params_before  # overrides not applied either
    assert not (ws / "mlflow.db").exists() and not (ws / "mlartifacts").exists()  # no fallback store written


def test_sigkill_mid_stage_then_rerun_skips_completed_stages(tmp_path: Path, prefect_env: dict[str, str]) -> None:
    ws = micro_workspace(tmp_path / "ws")
    env = base_env(ws, prefect_env, STAGE_SLEEP_TRAIN="120")
    proc = subprocess.Popen([str(BIN / "desta"), "retrain", "--no-push"], cwd=ws, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (ws / "out" / "train.started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "train never started"
            time.sleep(0.2)
        stage_pid = int((ws / "out" / "train.started").read_text())
        assert procs.alive(stage_pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the flow, dvc and the stage: nothing gets to clean up
        proc.wait()
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    assert list(lock["stages"]) == ["prepare"]  # train was cut short: not recorded
    env.pop("STAGE_SLEEP_TRAIN")
    t0 = time.perf_counter()
    res = retrain(ws, env, "--no-push")
    assert res.returncode == 0, res.stdout + res.stderr
    assert runs(ws) == ["prepare", "train", "train"]  # prepare did not run again
    assert "prepare skipped" in res.stderr and "train ran" in res.stderr, res.stderr
    assert list(yaml.safe_load((ws / "dvc.lock").read_text())["stages"]) == ["prepare", "train"]
    print(f"[kill] re-run after SIGKILL in {time.perf_counter() - t0:.1f} s")


def test_dead_prefect_server_is_named_before_the_flow_starts(tmp_path: Path) -> None:
    ws = micro_workspace(tmp_path / "ws")
    with refused_port() as port:
        dead = f"http://127.0.0.1:{port}/api"
        res = retrain(ws, base_env(ws, {"PREFECT_API_URL": dead}), timeout=120)
    assert res.returncode == 1 and f"Prefect server at {dead} is unreachable" in res.stderr.replace("\n", " "), res.stderr
    assert runs(ws) == []


def _wait_for_train(proc: subprocess.Popen, ws: Path) -> None:
    deadline = time.monotonic() + 240
    while not (ws / "out" / "train.started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "train never started"
        time.sleep(0.2)


def test_a_second_run_on_one_workspace_refuses_or_waits(tmp_path: Path, prefect_env: dict[str, str]) -> None:
    ws = micro_workspace(tmp_path / "ws")
    env = base_env(ws, prefect_env, STAGE_SLEEP_TRAIN="15")
    first = subprocess.Popen([str(BIN / "desta"), "retrain", "--no-push"], cwd=ws, env=env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = [first]
    try:
        _wait_for_train(first, ws)
        second = retrain(ws, env, "--no-push", timeout=120)  # between or inside stages: refused at once
        out = second.stdout + second.stderr
        assert second.returncode == 1 and "Traceback" not in out, out
        assert f"another retrain is running in {ws} (pid {first.pid} on " in out.replace("\n", " "), out
        queued = subprocess.Popen([str(BIN / "desta"), "retrain", "--no-push"], cwd=ws,
                                  env={**env, "DESTA_WORKSPACE_WAIT": "300"}, start_new_session=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(queued)
        stdout, stderr = first.communicate(timeout=300)
        assert first.returncode == 0, stdout + stderr
        q_out, q_err = queued.communicate(timeout=300)  # waited for the first, then found nothing to do
        assert queued.returncode == 0 and "nothing to do" in q_out + q_err, q_out + q_err
    finally:
        for p in started:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    assert runs(ws) == ["prepare", "train"]  # each stage ran once: the second run started nothing
    assert json.loads((ws / "out" / "train.json").read_text())["upstream"]  # train's output intact


def test_mlflow_killed_mid_stage_is_one_line_and_the_rerun_logs(tmp_path: Path) -> None:
    """A real MLflow server SIGKILLed while `desta ingest` works (after its pre-check passed): one error line
    naming MLflow, no traceback, the stage's outputs complete on disk; with a server back, the re-run rewrites
    no shard and logs its run."""
    corpus, out = micro_corpus(tmp_path / "corpus"), tmp_path / "out"
    args = [str(BIN / "desta"), "ingest", "--source", str(corpus), "--params", str(REPO / "params.yaml"), "--out", str(out)]
    env = env_for(REPO, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", COLUMNS="400")
    with mlflow_server(tmp_path / "mlflow-1", env) as (uri, server):
        proc = subprocess.Popen(args, cwd=tmp_path, env={**env, "MLFLOW_TRACKING_URI": uri}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not (out / "shards").exists():  # past the pre-check: decoding
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        os.killpg(server.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert err.count("error:") == 1 and "Traceback" not in err and f"MLflow ({uri})" in err, err
    assert (out / "stats.json").is_file() and (out / "manifest.jsonl").is_file()  # the work itself is whole
    first = (out / "manifest.jsonl").read_bytes()
    shards = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}

    with mlflow_server(tmp_path / "mlflow-2", env) as (uri, _):
        res = subprocess.run(args, cwd=tmp_path, env={**env, "MLFLOW_TRACKING_URI": uri}, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        import mlflow

        runs_logged = mlflow.MlflowClient(uri).search_runs([mlflow.MlflowClient(uri).get_experiment_by_name(
            "desta-tiny").experiment_id])
    assert len(runs_logged) == 1 and runs_logged[0].info.run_name.startswith("ingest")
    assert (out / "manifest.jsonl").read_bytes() == first
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()} == shards  # reused, not rewritten
