"""The `retrain` flow: run the DVC stages in dependency order as Prefect tasks.

Each stage is a task with retries and a timeout; up-to-date stages are skipped; one MLflow parent
run holds a child run per stage (stages nest under it through DESTA_PARENT_RUN_ID).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from components.config import apply_overrides, load_params
from components.tracking import stage_run
from flows import dvc

REPO = Path(__file__).resolve().parents[1]


@task(retries=2, retry_delay_seconds=[5, 30], timeout_seconds=4 * 3600, task_run_name="stage-{stage}")
def run_stage(stage: str, cwd: str, parent_run_id: str) -> dict[str, Any]:
    """`dvc repro` one stage, unless it is up to date."""
    log = get_run_logger()
    root = Path(cwd)
    if dvc.is_up_to_date(stage, root):
        log.info("stage %s is up to date: skipped", stage)
        return {"stage": stage, "status": "skipped", "seconds": 0.0}
    t0 = time.perf_counter()
    dvc.repro(stage, root, env={"DESTA_PARENT_RUN_ID": parent_run_id})
    seconds = round(time.perf_counter() - t0, 1)
    log.info("stage %s ran in %.1f s", stage, seconds)
    return {"stage": stage, "status": "ran", "seconds": seconds}


@task(retries=3, retry_delay_seconds=[5, 15, 45], timeout_seconds=3600)
def push_outputs(cwd: str) -> bool:
    """Push every DVC output to the remote, if one is configured."""
    root = Path(cwd)
    if not dvc.ensure_remote(root):
        get_run_logger().warning("no DVC remote configured: outputs stay in the local cache")
        return False
    dvc.push(root)
    return True


@flow(name="retrain", log_prints=True)
def retrain(overrides: list[str] | None = None, push: bool = True, cwd: str | None = None) -> dict[str, Any]:
    """Run every DVC stage in order. `overrides`: `key.path=value` strings applied to params.yaml first."""
    root = Path(cwd) if cwd else Path.cwd()
    params_path = root / "params.yaml"
    if overrides:
        apply_overrides(params_path, overrides)
    params = load_params(params_path)
    prof = params.active
    results = []
    with stage_run("retrain", prof.tracking.experiment, params=prof.model_dump(mode="json"),
                   tags={"desta.profile": params.profile, "desta.overrides": ";".join(overrides or [])}) as parent:
        parent.log_artifact(params_path)
        for stage in dvc.stages(root):
            results.append(run_stage(stage, str(root), parent.run_id))
        if (root / "dvc.lock").is_file():
            parent.log_artifact(root / "dvc.lock")
        pushed = push_outputs(str(root)) if push else False
        ran = [r["stage"] for r in results if r["status"] == "ran"]
        parent.log_metrics({"stages_ran": len(ran), "stages_skipped": len(results) - len(ran)})
        parent.set_tags({"desta.pushed": pushed})
    return {"run_id": parent.run_id, "stages": results, "pushed": pushed}
