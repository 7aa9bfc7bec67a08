"""The `retrain` flow: run the DVC stages in dependency order as Prefect tasks.

Before any stage work the flow checks the MLflow tracking server; stage status comes from one
`dvc status --json` (re-read only after a stage ran, since that may change what is downstream);
up-to-date stages are skipped; one MLflow parent run holds a child run per stage (stages nest
under it through DESTA_PARENT_RUN_ID); outputs are pushed to the DVC remote at the end, with
retries, after checking that the remote's S3 endpoint answers.

A killed run resumes where it stopped: DVC records a stage in dvc.lock only when it finished, so
the next run skips every completed stage and re-runs the interrupted one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from components.config import apply_overrides, load_params
from components.tracking import experiment_id, stage_run
from flows import dvc
from flows.lock import workspace_lock
from flows.logs import quiet_tracebacks
from flows.services import ServiceUnavailable, check_mlflow
from flows.settings import FlowSettings

REPO = Path(__file__).resolve().parents[1]


@task(retries=2, retry_delay_seconds=[5, 30], timeout_seconds=4 * 3600, task_run_name="stage-{stage}")
def run_stage(stage: str, cwd: str, parent_run_id: str) -> dict[str, Any]:
    """`dvc repro` one stage that `dvc status` reported as changed."""
    t0 = time.perf_counter()
    dvc.repro(stage, Path(cwd), env={"DESTA_PARENT_RUN_ID": parent_run_id})
    seconds = round(time.perf_counter() - t0, 1)
    get_run_logger().info("stage %s ran in %.1f s", stage, seconds)
    return {"stage": stage, "status": "ran", "seconds": seconds}


@task(retries=3, retry_delay_seconds=[5, 15, 45], timeout_seconds=3600)
def push_outputs(cwd: str) -> str:
    """Push every DVC output to the default remote; the error names the remote and its S3 endpoint."""
    return dvc.push_checked(Path(cwd))


def _pending(stage: str, root: Path, status: dict[str, Any] | None) -> tuple[bool, dict[str, Any]]:
    """(changed?, status) for `stage`; `status` None means stale: read it again (one dvc call)."""
    status = dvc.status(root) if status is None else status
    return stage in status, status


@flow(name="retrain", log_prints=True)
def retrain(overrides: list[str] | None = None, push: bool = True, cwd: str | None = None) -> dict[str, Any]:
    """Run every DVC stage in order. `overrides`: `key.path=value` strings applied to params.yaml first."""
    root = Path(cwd) if cwd else Path.cwd()
    quiet_tracebacks(ServiceUnavailable, dvc.DvcError)  # they end the run in one line; the traceback says nothing more
    with workspace_lock(root):  # one retrain per workspace: a second one waits or refuses, naming this one
        return _retrain(root, overrides, push)


def _retrain(root: Path, overrides: list[str] | None, push: bool) -> dict[str, Any]:
    log = get_run_logger()
    settings = FlowSettings.from_env()
    uri = check_mlflow()  # before touching params or stages: a dead server must not leave half a run
    params_path = root / "params.yaml"
    if overrides:
        apply_overrides(params_path, overrides)
    params = load_params(params_path)
    prof = params.active
    remote = dvc.ensure_remote(root) if push else False
    if push and not remote:
        log.warning("no DVC remote configured: outputs stay in the local cache")
    stage_task = run_stage.with_options(retries=settings.stage_retries)
    results = []
    with stage_run("retrain", prof.tracking.experiment, params=prof.model_dump(mode="json"),
                   tags={"desta.profile": params.profile, "desta.overrides": ";".join(overrides or [])}) as parent:
        parent.log_artifact(params_path)
        status: dict[str, Any] | None = None
        for stage in dvc.stages(root):
            changed, status = _pending(stage, root, status)
            if not changed:
                log.info("stage %s is up to date: skipped", stage)
                results.append({"stage": stage, "status": "skipped", "seconds": 0.0})
                continue
            results.append(stage_task(stage, str(root), parent.run_id))
            status = None  # what is downstream may have changed
        if (root / "dvc.lock").is_file():
            parent.log_artifact(root / "dvc.lock")
        ran = [r["stage"] for r in results if r["status"] == "ran"]
        parent.log_metrics({"stages_ran": len(ran), "stages_skipped": len(results) - len(ran)})
        pushed = False
        if remote:
            parent.set_tags({"desta.pushed": "pending"})
            push_task = push_outputs.with_options(retries=settings.push_retries,
                                                  retry_delay_seconds=settings.push_retry_delays)
            summary = push_task(str(root))
            log.info("dvc push: %s", summary)
            pushed = True
        parent.set_tags({"desta.pushed": pushed})
        exp_id = experiment_id(prof.tracking.experiment)  # the one stage_run used (get-or-create): for the run URL
    return {"run_id": parent.run_id, "experiment_id": exp_id, "tracking_uri": uri,
            "stages": results, "pushed": pushed, "noop": False}
