"""`desta lineage` against real services: SeaweedFS S3 (DVC remote) + MLflow server, a toy DVC pipeline whose
stages log through components.tracking and the lineage hook, pushed with `dvc push`."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.conftest import VENV_BIN

pytestmark = pytest.mark.integration
MODEL = "lineage-toy-model"


def lineage(toy: dict[str, Any], *args: str) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    res = subprocess.run([str(VENV_BIN / "desta"), "lineage", *args], cwd=toy["root"], env=toy["env"],
                         capture_output=True, text=True, timeout=180)
    print(f"[lineage] desta lineage {' '.join(args)}: exit {res.returncode} in {time.perf_counter() - t0:.1f} s")
    return res


def s3(toy: dict[str, Any]) -> Any:
    env = toy["env"]
    return boto3.client("s3", endpoint_url=env["DESTA_S3_ENDPOINT_URL"], region_name=env.get("AWS_DEFAULT_REGION"),
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def lock_md5(root: Path, stage: str, path: str) -> str:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return next(o["md5"] for o in lock["stages"][stage]["outs"] if o["path"] == path)


def test_complete_chain_passes(toy_pipeline: dict[str, Any]) -> None:
    res = lineage(toy_pipeline, f"{MODEL}/{toy_pipeline['registered_version']}", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    chain = json.loads(res.stdout)
    assert chain["ok"] and not chain["broken"]
    links = chain["links"]
    kinds = [(link["kind"], link["name"]) for link in links]
    # model version -> training run -> label shards -> label run (+provenance) -> seed shards -> seeds run
    # -> ingested corpus -> ingest run -> raw sources
    names = [n for _, n in kinds]
    version = f"{MODEL} v{toy_pipeline['registered_version']}"  # then its aliases, if a test set one
    order = [next(i for i, n in enumerate(names) if n == version or n.startswith(f"{version} ")),
             names.index(f"train run {toy_pipeline['mlflow_run_id']}"), names.index("data/label/shards"),
             next(i for i, (k, n) in enumerate(kinds) if n.startswith("label run")),
             names.index("data/seeds/shards"), next(i for i, (k, n) in enumerate(kinds) if n.startswith("seeds run")),
             names.index("data/ingest/manifest.jsonl"),
             next(i for i, (k, n) in enumerate(kinds) if n.startswith("ingest run")), names.index("speech")]
    assert order == sorted(order), kinds
    root = toy_pipeline["root"]
    bucket = toy_pipeline["env"]["DESTA_DVC_REMOTE_URL"]
    for stage, path in (("label", "data/label/shards"), ("seeds", "data/seeds/shards"), ("ingest", "data/ingest/shards")):
        link = next(link for link in links if link["name"] == path)
        md5 = lock_md5(root, stage, path)
        assert link["digest"] == md5
        assert link["uri"] == f"{bucket}/files/md5/{md5[:2]}/{md5[2:]}"
    prov = next(link for link in links if link["kind"] == "provenance")
    assert prov["digest"] == "sha256:" + "ab" * 32 and "cd" * 32 in prov["detail"]
    raw = {link["name"]: link for link in links if link["kind"] == "raw-source"}
    assert set(raw) == {"speech", "sounds"} and raw["speech"]["uri"].endswith("/raw/speech")


def test_table_output_and_aliases(toy_pipeline: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(toy_pipeline["env"]["MLFLOW_TRACKING_URI"])
    client.set_registered_model_alias(MODEL, "champion", toy_pipeline["registered_version"])
    res = lineage(toy_pipeline, "champion", "--name", MODEL)
    print(res.stdout + res.stderr)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "data/label/shards" in res.stdout and "s3://" in res.stdout and "lineage complete" in res.stderr
    assert "AWS_SECRET" not in res.stdout + res.stderr and toy_pipeline["env"]["AWS_SECRET_ACCESS_KEY"] not in res.stdout
    res = lineage(toy_pipeline, f"{MODEL}@champion", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["ok"]
    res = lineage(toy_pipeline, "--run-id", toy_pipeline["mlflow_run_id"], "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["links"][0]["name"] == f"train run {toy_pipeline['mlflow_run_id']}"


def test_evaluate_run_walks_through_the_model(toy_pipeline: dict[str, Any]) -> None:
    res = lineage(toy_pipeline, "--run-id", toy_pipeline["evaluate_run_id"], "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    names = [link["name"] for link in json.loads(res.stdout)["links"]]
    assert names[0] == f"evaluate run {toy_pipeline['evaluate_run_id']}"
    assert "data/train/model" in names and f"train run {toy_pipeline['mlflow_run_id']}" in names and "speech" in names


def test_missing_object_names_the_broken_link(toy_pipeline: dict[str, Any]) -> None:
    """Delete one seed shard from the DVC remote: lineage fails naming data/seeds/shards and the file."""
    client, bucket = s3(toy_pipeline), toy_pipeline["env"]["DESTA_DVC_REMOTE_URL"].removeprefix("s3://")
    md5 = lock_md5(toy_pipeline["root"], "seeds", "data/seeds/shards")
    listing = json.loads(client.get_object(Bucket=bucket, Key=f"files/md5/{md5[:2]}/{md5[2:]}")["Body"].read())
    victim = next(e for e in listing if e["relpath"] == "seeds-000000.jsonl")
    key = f"files/md5/{victim['md5'][:2]}/{victim['md5'][2:]}"
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.delete_object(Bucket=bucket, Key=key)
    try:
        res = lineage(toy_pipeline, f"{MODEL}/{toy_pipeline['registered_version']}")
        print(res.stderr)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "broken link" in res.stderr and "data/seeds/shards" in res.stderr
        assert "seeds-000000.jsonl" in res.stderr and key in res.stderr
        assert "data/label/shards" not in res.stderr  # only the broken link is named
    finally:
        client.put_object(Bucket=bucket, Key=key, Body=body)
    # the .dir object itself
    dkey = f"files/md5/{md5[:2]}/{md5[2:]}"
    dbody = client.get_object(Bucket=bucket, Key=dkey)["Body"].read()
    client.delete_object(Bucket=bucket, Key=dkey)
    try:
        res = lineage(toy_pipeline, f"{MODEL}/{toy_pipeline['registered_version']}", "--json")
        assert res.returncode == 1
        assert any("data/seeds/shards" in b and dkey in b for b in json.loads(res.stdout)["broken"])
    finally:
        client.put_object(Bucket=bucket, Key=dkey, Body=dbody)
    assert lineage(toy_pipeline, f"{MODEL}/{toy_pipeline['registered_version']}").returncode == 0


def test_model_version_without_training_run_fails(toy_pipeline: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(toy_pipeline["env"]["MLFLOW_TRACKING_URI"])
    client.create_registered_model("lineage-orphan")
    mv = client.create_model_version("lineage-orphan", source="s3://lineage-mlflow/somewhere/model")
    res = lineage(toy_pipeline, f"lineage-orphan/{mv.version}")
    assert res.returncode == 1
    assert "no training run link" in res.stderr and "lineage-orphan" in res.stderr
    res = lineage(toy_pipeline, "lineage-orphan/99")
    assert res.returncode == 1 and "no model version" in res.stderr


def test_run_without_lineage_record_fails(toy_pipeline: dict[str, Any]) -> None:
    """A training run whose stage never called the hook: the chain breaks at that run, by name."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(toy_pipeline["env"]["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("lineage-toy")
    run = client.create_run(exp.experiment_id, tags={"desta.stage": "train"})
    client.set_terminated(run.info.run_id)
    client.create_registered_model("lineage-nohook")
    mv = client.create_model_version("lineage-nohook", source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    res = lineage(toy_pipeline, f"lineage-nohook/{mv.version}")
    assert res.returncode == 1
    assert f"train run {run.info.run_id} has no lineage record" in res.stderr


def test_stage_runs_record_git_params_and_lock(toy_pipeline: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(toy_pipeline["env"]["MLFLOW_TRACKING_URI"])
    run = client.get_run(toy_pipeline["mlflow_run_id"])
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=toy_pipeline["root"], capture_output=True, text=True).stdout.strip()
    assert run.data.tags["desta.lineage.git_commit"].startswith(sha)
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "lineage")}
    assert {"lineage/params.yaml", "lineage/dvc.lock", "lineage/lineage.json"} <= arts
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"data/label/shards", "data/ingest/shards"}
    assert len(run.inputs.dataset_inputs) == 2  # the second hook call (after the model exists) adds no duplicates
    lock = yaml.safe_load((toy_pipeline["root"] / "dvc.lock").read_text())
    assert run.data.tags["desta.lineage.out.data/train/model"] == lock["stages"]["train"]["outs"][0]["md5"]
    assert inputs["data/label/shards"].dataset.digest == lock_md5(toy_pipeline["root"], "label", "data/label/shards")
    # the train stage's own dvc.lock deps (written after it ran) equal what the hook computed while it ran
    deps = {d["path"]: d["md5"] for d in lock["stages"]["train"]["deps"]}
    assert {n: d.dataset.digest for n, d in inputs.items()} == deps
    mv = client.get_model_version(MODEL, toy_pipeline["registered_version"])
    assert mv.run_id == run.info.run_id
