"""The whole retrain flow on the real stages and the real stack, on a micro corpus (part of `make test`).

`desta retrain` with micro overrides (30 espeak clips, 4 training steps, 10 questions) in a clone of
the repo, with the local stack (SeaweedFS S3, MLflow server on S3, Prefect server + worker) on free ports:
every stage runs, outputs land in the DVC bucket, MLflow has the parent run with one child run per
stage; then a re-run is a no-op, `--always-flow` records it, and `desta lineage` verifies the chain;
the stack restarts and the chain, the remote and the champion (an MLflow pyfunc) are all still there;
a fresh clone's `dvc pull` restores the workspace, and its forced `dvc repro evaluate` gates the version
MLflow names for the pulled weights (the clone has no train checkpoints).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.stack import StackConfig, client_env, down, up
from tests.flows.workspace import BIN, clone, env_for, micro_corpus, micro_overrides, overlay_working_tree

pytestmark = pytest.mark.integration
STAGES = ["ingest", "seeds", "label", "train", "evaluate"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    from components.stack import StackError
    from tests.components.stack.test_stack import free_ports

    data_dir = tmp_path_factory.mktemp("stack")
    for attempt in range(3):  # ports free a moment ago may be taken before a service binds them: pick again
        s3, mlflow, prefect = free_ports(3)
        cfg = StackConfig.resolve(data_dir=data_dir, s3_port=s3, mlflow_port=mlflow, prefect_port=prefect,
                                  pool=f"desta-it-{s3}", timeout=180.0)
        try:
            up(cfg, log=print)
            break
        except StackError as err:
            if "already in use" not in str(err) or attempt == 2:
                raise
    try:
        yield cfg
    finally:
        down(cfg.data_dir, log=print)


def desta(ws: Path, env: dict[str, str], *args: str, timeout: float = 2400) -> subprocess.CompletedProcess:
    res = subprocess.run([str(BIN / "desta"), *args], cwd=ws, env=env, capture_output=True, text=True, timeout=timeout)
    print(f"$ desta {' '.join(args)} -> {res.returncode}\n{res.stderr[-3000:]}")
    return res


def s3(cfg: StackConfig) -> Any:
    import boto3

    env = client_env(cfg, {})
    return boto3.client("s3", endpoint_url=cfg.s3_url, region_name=env["AWS_DEFAULT_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def keys(cfg: StackConfig, bucket: str) -> list[str]:
    pages = s3(cfg).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.mark.timeout(3600)
def test_full_retrain_on_the_stack_then_noop(tmp_path: Path, stack: StackConfig) -> None:
    ws = clone(tmp_path / "ws")
    overlay_working_tree(ws)
    corpus = micro_corpus(tmp_path / "corpus")
    env = env_for(ws, **client_env(stack, {}))  # MLflow server, S3 remote, Prefect server of the stack
    sets = [a for o in micro_overrides(corpus) for a in ("-S", o)]

    t0 = time.perf_counter()
    res = desta(ws, env, "retrain", *sets)
    full = time.perf_counter() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    text = res.stderr.replace("\n", " ")
    for stage in STAGES:
        assert re.search(rf"\b{stage} ran\b", text), text
    assert "pushed: True" in text
    run_id = re.search(r"MLflow run ([0-9a-f]{32})", text).group(1)

    # Every DVC output is in the S3 bucket of the remote (content-addressed), MLflow artifacts in theirs.
    dvc_keys = keys(stack, stack.dvc_bucket)
    assert len(dvc_keys) > 10 and all(k.startswith("files/md5/") for k in dvc_keys), dvc_keys
    cloud = subprocess.run([str(BIN / "dvc"), "status", "--cloud", "--json"], cwd=ws, env=env, capture_output=True,
                           text=True, check=True)
    assert json.loads(cloud.stdout or "{}") == {}, cloud.stdout  # every cached output is in the bucket
    assert any(k.startswith("mlartifacts/") for k in keys(stack, stack.mlflow_bucket))

    # MLflow: the flow's parent run with a child run per stage, all finished.
    from mlflow import MlflowClient

    client = MlflowClient(stack.mlflow_url)
    parent = client.get_run(run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["stages_ran"] == 5
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    assert {c.data.tags.get("desta.stage") for c in children} >= set(STAGES), [c.data.tags for c in children]
    assert all(c.info.status == "FINISHED" for c in children)

    # Nothing changed: the re-run starts no stage (no flow, one `dvc status`), and pushes nothing new.
    t1 = time.perf_counter()
    noop = desta(ws, env, "retrain")
    noop_s = time.perf_counter() - t1
    assert noop.returncode == 0 and "nothing to do" in noop.stderr, noop.stderr
    assert all(f"{s} skipped" in noop.stderr for s in STAGES)
    recorded = desta(ws, env, "retrain", "--always-flow")
    assert recorded.returncode == 0 and not re.search(r"\b\w+ ran\b", recorded.stderr), recorded.stderr
    again = re.search(r"MLflow run ([0-9a-f]{32})", recorded.stderr.replace("\n", " ")).group(1)
    assert client.get_run(again).data.metrics["stages_ran"] == 0
    assert len(keys(stack, stack.dvc_bucket)) == len(dvc_keys)

    lineage = desta(ws, env, "lineage", "champion")
    assert lineage.returncode == 0, lineage.stdout + lineage.stderr
    champion = client.get_model_version_by_alias("desta-audio-tiny", "champion")

    # The stack restarts: the remote, the registry and the lineage chain are all still there.
    t2 = time.perf_counter()
    down(stack.data_dir, log=print)
    up(stack, log=print)
    restart_s = time.perf_counter() - t2
    assert len(keys(stack, stack.dvc_bucket)) == len(dvc_keys)
    cloud = subprocess.run([str(BIN / "dvc"), "status", "--cloud", "--json"], cwd=ws, env=env, capture_output=True,
                           text=True, check=True)
    assert json.loads(cloud.stdout or "{}") == {}, cloud.stdout
    again_lineage = desta(ws, env, "lineage", "champion")
    assert again_lineage.returncode == 0 and "lineage complete" in again_lineage.stderr, again_lineage.stderr
    # the champion is an MLflow model: MLflow's own API loads it and it answers about a real clip
    import mlflow.pyfunc
    import pandas as pd

    mlflow.set_tracking_uri(stack.mlflow_url)
    try:
        model = mlflow.pyfunc.load_model("models:/desta-audio-tiny@champion", model_config={"data_root": str(ws / "data")})
    finally:
        mlflow.set_tracking_uri(None)
    seed = json.loads(next((ws / "data" / "seeds" / "shards").glob("*.jsonl")).read_text().splitlines()[0])
    answer = model.predict(pd.DataFrame({"audio": [seed["audio"]],
                                         "instruction": ["What is the gender of the speaker?"]}),
                           params={"max_new_tokens": 8})
    assert len(answer) == 1 and isinstance(answer[0], str) and answer[0], answer

    # A fresh clone with the run's versioned state (params.yaml + dvc.lock, as one would commit them)
    # restores every output from the S3 remote with `dvc pull`, byte for byte.
    fresh = clone(tmp_path / "fresh")
    overlay_working_tree(fresh)
    for name in ("params.yaml", "dvc.lock"):
        (fresh / name).write_bytes((ws / name).read_bytes())
    fresh_env = env_for(fresh, **client_env(stack, {}))
    subprocess.run([str(BIN / "python"), "-c", "from pathlib import Path; from flows.dvc import ensure_remote; "
                    "assert ensure_remote(Path('.'))"], cwd=fresh, env=fresh_env, check=True)  # as the flow does
    subprocess.run([str(BIN / "dvc"), "pull"], cwd=fresh, env=fresh_env, check=True, capture_output=True, text=True)
    status = subprocess.run([str(BIN / "dvc"), "status", "--json"], cwd=fresh, env=fresh_env, capture_output=True,
                            text=True, check=True)
    assert json.loads(status.stdout or "{}") == {}, status.stdout
    for out in ("data/label/shards", "data/train/model", "data/seeds/shards", "data/evaluate/predictions.jsonl"):
        a, b = ws / out, fresh / out
        files = sorted(f.relative_to(a) for f in a.rglob("*") if f.is_file()) if a.is_dir() else [Path("")]
        assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files), out

    # The gate after a fresh clone: no train checkpoints here, the version comes from MLflow by digest.
    assert not (fresh / "data" / "train" / "checkpoints").exists()
    forced = subprocess.run([str(BIN / "dvc"), "repro", "-f", "-s", "evaluate"], cwd=fresh, env=fresh_env,
                            capture_output=True, text=True, timeout=1200)
    out = (forced.stdout + forced.stderr).replace("\n", " ")
    assert forced.returncode == 0, out[-3000:]
    assert f"gate desta-audio-tiny v{champion.version} (its training run logged data/train/model" in out, out[-3000:]
    print(f"[integration] full retrain {full:.0f} s, no-op re-run {noop_s:.1f} s, stack restart {restart_s:.1f} s, "
          f"total {time.perf_counter() - t0:.0f} s")
    (tmp_path / "timings.json").write_text(json.dumps({"full_s": full, "noop_s": noop_s, "restart_s": restart_s}))
