"""The stack keeps what it stores, and only for its own keys: a toy pipeline reproduced with DVC, pushed to the
stack's SeaweedFS and logged to its MLflow server survives `down`/`up` and a SIGKILLed object store (DVC in
sync, every S3 object, the champion's artifacts, the lineage chain); other keys get 403; `--purge` deletes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.stack import procs
from components.stack.config import StackConfig
from components.stack.env import client_env
from tests.components.lineage.conftest import build_toy_pipeline, git_commit_all, run
from tests.components.stack.test_stack import stack_cli, stack_processes, up_args, up_on_free_ports
from tests.conftest import VENV_BIN

pytestmark = pytest.mark.integration
MODEL = "lineage-toy-model"  # what the toy train stage registers


def _state(data_dir: Path) -> dict[str, Any]:
    return json.loads((data_dir / "stack.json").read_text())


@pytest.fixture(scope="module")
def durable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("durable")
    data_dir, pool = base / "stack", f"desta-durable-{os.getpid()}"
    ports, res = up_on_free_ports(data_dir, pool)
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        cfg = StackConfig.from_dict(_state(data_dir)["config"])
        env = {**os.environ, **client_env(cfg), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               "DESTA_LINEAGE_STRICT": "1", "DO_NOT_TRACK": "1", "GIT_TERMINAL_PROMPT": "0"}
        env.pop("DESTA_PARENT_RUN_ID", None)
        toy = build_toy_pipeline(base / "repo", env, cfg)
        from mlflow.tracking import MlflowClient

        MlflowClient(cfg.mlflow_url).set_registered_model_alias(MODEL, "champion", toy["registered_version"])
        yield {**toy, "dir": data_dir, "ports": ports, "pool": pool, "up_output": res.stdout + res.stderr, "base": base}
    finally:
        stack_cli("down", "--data-dir", str(data_dir), "--purge")
        assert not stack_processes(ports, pool)


def _s3(cfg: StackConfig, **keys: str) -> Any:
    import boto3

    env = {**client_env(cfg), **keys}
    return boto3.client("s3", endpoint_url=cfg.s3_url, region_name=env["AWS_DEFAULT_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def _objects(cfg: StackConfig) -> dict[str, tuple[int, str]]:
    """Every object in both buckets: key -> (size, sha256 of its bytes)."""
    s3, out = _s3(cfg), {}
    for bucket in (cfg.dvc_bucket, cfg.mlflow_bucket):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                out[f"{bucket}/{obj['Key']}"] = (obj["Size"], hashlib.sha256(body).hexdigest())
    return out


def _snapshot(toy: dict[str, Any], dst: Path) -> dict[str, Any]:
    """What a user audits weeks later, read only through the services' APIs and the DVC/desta CLIs."""
    import mlflow.artifacts
    from mlflow.tracking import MlflowClient

    cfg, env, root = toy["cfg"], toy["env"], toy["root"]
    status = run([str(VENV_BIN / "dvc"), "status", "-c"], root, env)
    assert "in sync" in status.stdout, status.stdout
    lineage = run([str(VENV_BIN / "desta"), "lineage", "champion", "--name", MODEL, "--json"], root, env, timeout=180)
    chain = json.loads(lineage.stdout)
    assert chain["ok"] and not chain["broken"], chain
    client = MlflowClient(cfg.mlflow_url)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    got = Path(mlflow.artifacts.download_artifacts(run_id=champion.run_id, artifact_path="model",
                                                   dst_path=str(dst), tracking_uri=cfg.mlflow_url))
    files = {str(p.relative_to(got)): hashlib.sha256(p.read_bytes()).hexdigest() for p in got.rglob("*") if p.is_file()}
    assert files, "the champion's model artifacts are empty"
    run_ = client.get_run(champion.run_id)
    return {"objects": _objects(cfg), "champion": champion.version, "artifacts": files,
            "metrics": run_.data.metrics, "links": [(ln["name"], ln["digest"]) for ln in chain["links"]]}


def test_other_keys_are_refused(durable: dict[str, Any]) -> None:
    from botocore.exceptions import ClientError

    cfg = durable["cfg"]
    key = next(iter(_objects(cfg))).split("/", 1)[1]
    assert _s3(cfg).list_buckets()["Buckets"]
    own = client_env(cfg)["AWS_ACCESS_KEY_ID"]
    for keys, code in (({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "SignatureDoesNotMatch"),
                       ({"AWS_ACCESS_KEY_ID": "AKIAOTHERUSER", "AWS_SECRET_ACCESS_KEY": "x"}, "InvalidAccessKeyId"),
                       ({"AWS_ACCESS_KEY_ID": own, "AWS_SECRET_ACCESS_KEY": "desta-local"}, "SignatureDoesNotMatch")):
        with pytest.raises(ClientError) as err:
            _s3(cfg, **keys).get_object(Bucket=cfg.dvc_bucket, Key=key)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert err.value.response["Error"]["Code"] == code
    with pytest.raises(urllib.error.HTTPError) as anon:  # unsigned
        urllib.request.urlopen(f"{cfg.s3_url}/{cfg.dvc_bucket}/{key}", timeout=10)
    assert anon.value.code == 403


def test_the_secret_stays_in_its_files(durable: dict[str, Any]) -> None:
    data_dir, secret = durable["dir"], client_env(durable["cfg"])["AWS_SECRET_ACCESS_KEY"]
    for name in ("credentials.json", "s3-identities.json"):
        assert (data_dir / name).stat().st_mode & 0o777 == 0o600, name
    assert secret not in durable["up_output"] and len(secret) >= 32
    leaks = [p for base in (data_dir, durable["root"]) for p in base.rglob("*")
             if p.is_file() and p.name not in ("credentials.json", "s3-identities.json") and secret.encode() in p.read_bytes()]
    assert leaks == []  # state file, logs, mlflow.db, prefect db, SeaweedFS's own store, the repo's DVC config
    status = stack_cli("status", "--data-dir", str(data_dir))
    assert secret not in status.stdout + status.stderr


def test_status_names_the_server_and_its_data(durable: dict[str, Any]) -> None:
    res = stack_cli("status", "--data-dir", str(durable["dir"]))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SeaweedFS 4.48" in res.stdout
    s3_line = next(ln for ln in res.stdout.splitlines() if ln.split()[:2] == ["data", "s3"])
    assert s3_line.split()[2:4] != ["0", "B"] and str(durable["dir"] / "s3") in s3_line, s3_line


def test_restart_and_a_killed_store_lose_nothing(durable: dict[str, Any], tmp_path: Path) -> None:
    before = _snapshot(durable, tmp_path / "before")
    data_dir, ports, pool = durable["dir"], durable["ports"], durable["pool"]
    down = stack_cli("down", "--data-dir", str(data_dir))
    assert down.returncode == 0 and "data kept" in down.stdout, down.stdout + down.stderr
    assert not stack_processes(ports, pool)
    up = stack_cli(*up_args(data_dir, ports, pool))
    assert up.returncode == 0, up.stdout + up.stderr
    assert _snapshot(durable, tmp_path / "after-restart") == before

    s3_pid = _state(data_dir)["services"]["s3"]["pid"]
    os.killpg(s3_pid, signal.SIGKILL)  # the object store dies without a chance to flush anything
    for _ in range(100):
        procs.reap(s3_pid)
        if not procs.alive(s3_pid):
            break
    assert stack_cli("status", "--data-dir", str(data_dir)).returncode == 1
    again = stack_cli(*up_args(data_dir, ports, pool))  # restarts the stale stack
    assert again.returncode == 0 and "stale" in again.stderr, again.stdout + again.stderr
    assert _snapshot(durable, tmp_path / "after-kill") == before

    clone = tmp_path / "clone"  # a fresh clone restores the workspace from the remote alone
    env = durable["env"]
    git_commit_all(durable["root"], env, "dvc.lock of the reproduced pipeline")
    run(["git", "clone", "-q", str(durable["root"]), str(clone)], tmp_path, env)
    run([str(VENV_BIN / "dvc"), "pull"], clone, env)
    status = run([str(VENV_BIN / "dvc"), "status"], clone, env)
    assert "up to date" in status.stdout, status.stdout
    assert (clone / "data/train/model").is_dir()


def test_purge_is_the_only_delete(tmp_path: Path) -> None:
    """On a stack of its own (the module's stays whole for the other tests, in any order): a DVC-style object
    and a registered model survive `down`, `down --purge` deletes them, and the next `up` has new keys."""
    from mlflow.tracking import MlflowClient

    data_dir, pool = tmp_path / "stack", f"desta-purge-{os.getpid()}"
    ports, res = up_on_free_ports(data_dir, pool)
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        cfg = StackConfig.from_dict(_state(data_dir)["config"])
        _s3(cfg).put_object(Bucket=cfg.dvc_bucket, Key="files/md5/00/purge-me", Body=b"data")
        MlflowClient(cfg.mlflow_url).create_registered_model("purge-me")
        old_key = client_env(cfg)["AWS_ACCESS_KEY_ID"]
        assert stack_cli("down", "--data-dir", str(data_dir)).returncode == 0
        assert stack_cli(*up_args(data_dir, ports, pool)).returncode == 0  # a plain down keeps everything
        assert list(_objects(cfg)) == [f"{cfg.dvc_bucket}/files/md5/00/purge-me"]
        assert [m.name for m in MlflowClient(cfg.mlflow_url).search_registered_models()] == ["purge-me"]

        res = stack_cli("down", "--data-dir", str(data_dir), "--purge")
        assert res.returncode == 0 and "data purged" in res.stdout, res.stdout + res.stderr
        assert not data_dir.exists() and not stack_processes(ports, pool)
        up = stack_cli(*up_args(data_dir, ports, pool))
        assert up.returncode == 0, up.stdout + up.stderr
        cfg = StackConfig.from_dict(_state(data_dir)["config"])
        assert _objects(cfg) == {} and client_env(cfg)["AWS_ACCESS_KEY_ID"] != old_key  # new store, new keys
        assert MlflowClient(cfg.mlflow_url).search_registered_models() == []
    finally:
        stack_cli("down", "--data-dir", str(data_dir), "--purge")
        assert not stack_processes(ports, pool)
