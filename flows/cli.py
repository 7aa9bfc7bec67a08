"""`desta`, composed on top: every component command (components/cli.py) plus the flow commands,
`retrain` (the Prefect flow over the DVC stages) and `run` (the main job, with the local stack's env)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from components.atomic import DISK_ERRORS
from components.cli import app
from components.config import ConfigError
from components.console import ParamsOpt, console, fail, fail_line, load_profile, require_tracking



@app.command()
def retrain(
    set_: Optional[list[str]] = typer.Option(None, "--set", "-S", help="Override a param: key.path=value (repeatable)."),  # noqa: UP045
    push: bool = typer.Option(True, help="Push DVC outputs to the remote at the end (if one is configured)."),
    always_flow: bool = typer.Option(
        False, "--always-flow", help="Run the Prefect flow even when every stage is up to date (records the no-op in MLflow)."
    ),
) -> None:
    """Run the Prefect retrain flow: every DVC stage in order, skipping up-to-date ones.

    When `dvc status` shows nothing to do (and no --set), the flow is not started: see flows/noop.py.
    """
    result = _retrain(set_ or [], push, always_flow)
    _print_result(result)


def _retrain(overrides: list[str], push: bool, always_flow: bool) -> dict:
    """The flow's result, or the no-op fast path's; every failure becomes a clear one-line error."""
    from flows.dvc import DvcError
    from flows.lock import WorkspaceBusy, workspace_lock
    from flows.noop import finish_noop, up_to_date
    from flows.services import ServiceUnavailable, check_prefect

    t0 = time.perf_counter()
    root = Path.cwd()
    try:
        with workspace_lock(root):  # a second run on this workspace waits or refuses here, in one line
            if not overrides and not always_flow and up_to_date(root):
                result = finish_noop(root, push)
            else:
                if os.environ.get("PREFECT_API_URL"):
                    check_prefect(os.environ["PREFECT_API_URL"])  # else each API call retries for minutes
                from flows.retrain import retrain as retrain_flow

                result = retrain_flow(overrides=overrides, push=push, cwd=str(root))
    except (ConfigError, DvcError, ServiceUnavailable, WorkspaceBusy) as err:
        fail(str(err))
    result["seconds"] = time.perf_counter() - t0
    return result


def _print_result(result: dict) -> None:
    for r in result["stages"]:
        console.print(f"[green]{r['stage']}[/] {r['status']}" + (f" in {r['seconds']:.0f} s" if r["status"] == "ran" else ""))
    if result["noop"]:
        console.print(f"[green]retrain[/] nothing to do: every stage is up to date (dvc status), checked in "
                      f"{result['seconds']:.1f} s; flow not started, nothing logged (--always-flow to record it); "
                      f"pushed: {result['pushed']}")
        return
    console.print(f"[green]retrain[/] done in {result['seconds']:.0f} s; MLflow run {result['run_id']} "
                  f"({_run_url(result)}); pushed: {result['pushed']}")


def _run_url(result: dict) -> str:
    """A link to the run in the MLflow UI for a tracking server, else the store URI."""
    uri = result.get("tracking_uri") or ""
    if uri.startswith(("http://", "https://")) and result.get("experiment_id"):
        return f"{uri.rstrip('/')}/#/experiments/{result['experiment_id']}/runs/{result['run_id']}"
    return uri


def _use_stack() -> bool:
    """Export the client env of a running local stack (./.stack or $DESTA_STACK_DIR) unless one is already set."""
    from components.stack import client_env, load, status
    from components.stack.state import config_of

    if os.environ.get("MLFLOW_TRACKING_URI") or os.environ.get("DESTA_DVC_REMOTE_URL"):
        return True  # the caller chose (e.g. `eval "$(desta stack env)"`): keep it
    try:
        state = load()
    except ValueError:
        state = None
    if state is None or not all(r.running and r.healthy for r in status(state)):
        return False
    os.environ.update(client_env(config_of(state)))
    return True


@app.command()
def run(
    push: bool = typer.Option(True, help="Push DVC outputs to the stack's S3 remote at the end."),
) -> None:
    """The main job on the embedded default: the retrain flow over every stage, then a short summary.

    Uses the local stack when it is up (MLflow server, S3 remote, Prefect server); without it, MLflow
    goes to the local sqlite store, nothing is pushed, and Prefect starts a temporary server.
    """
    if not _use_stack():
        console.print("[yellow]warning:[/] the local stack is not up (`desta stack up`): MLflow logs to the local "
                      "sqlite store, no DVC remote to push to, Prefect starts a temporary server")
    result = _retrain([], push, always_flow=False)
    _print_result(result)
    root = Path(load_profile(None).data.root)
    metrics = root / "evaluate" / "metrics.json"
    if metrics.is_file():
        data = json.loads(metrics.read_text())
        keys = ("mcq_accuracy", "mcq_forced_choice_accuracy", "transcript_wer", "if_rate_audio", "forgetting_rate")
        console.print("[green]evaluate[/] " + ", ".join(f"{k} {data.get(k)}" for k in keys if k in data))
    else:
        console.print(f"[yellow]no evaluation metrics yet ({metrics})[/]")
    from components.evaluate.outputs import ACCURACY_FIGURE, CONFUSION_FIGURES
    from components.train.recipe import LOSS_FIGURE

    pngs = [p for p in (root / "train" / LOSS_FIGURE, root / "evaluate" / ACCURACY_FIGURE,
                        *(root / "evaluate" / f for f in CONFUSION_FIGURES.values())) if p.is_file()]
    if pngs:
        console.print(f"[green]pictures[/] {', '.join(map(str, pngs))} (also in the MLflow train and evaluate runs' "
                      "artifacts); `dvc plots show` draws the plot data into dvc_plots/index.html (works offline)")


@app.command()
def spread(
    seed: Optional[list[int]] = typer.Option(None, "--seed", help="A training seed (repeat it; default 0, 1 and 2)."),  # noqa: UP045
    out: Optional[Path] = typer.Option(None, help="Output dir (default: <data.root>/spread)."),  # noqa: UP045
    params: Optional[Path] = ParamsOpt,  # noqa: UP045
    track: bool = typer.Option(True, help="Log the summary to MLflow (a `spread` run)."),
    progress: bool = typer.Option(True, help="Show the evaluation's progress bar."),
) -> None:
    """Train and evaluate once per training seed on the pipeline's label rows and held-out questions, then
    print each attribute's mean and spread (flows/spread.py). Run `desta run` (or `dvc repro label`) first."""
    from components.config import load_params
    from components.train.launch import TrainError
    from flows.spread import SPREAD
    from flows.spread import spread as run_spread

    try:
        loaded = load_params(params)
    except ConfigError as err:
        fail(str(err))
    prof = loaded.active
    if track:
        require_tracking(stage=True)
    root = Path(prof.data.root)
    out = out or root / "spread"
    seeds = seed or [0, 1, 2]
    t0 = time.perf_counter()
    try:
        summary = run_spread(prof, loaded.profile, seeds, root / "label", root / "seeds", out, progress,
                             lambda s, what: console.print(f"[cyan]spread[/] seed {s}: {what}"))
    except (TrainError, ValueError, FileNotFoundError) as err:
        fail(str(err))
    console.print(f"[green]spread[/] {len(seeds)} training seeds in {time.perf_counter() - t0:.0f} s -> {out / SPREAD}")
    console.print("  attribute         forced choice mean ± std (min-max)   string match   | prior  chance  one answer  n")
    for attribute, row in summary["per_attribute"].items():
        fc, sm = row["forced_choice"], row["string_match"]
        console.print(f"  {attribute:16s}  {fc['mean']:6.2f} ± {fc['std']:5.2f} ({fc['min']:.2f}-{fc['max']:.2f})"
                      f"   {sm['mean']:6.2f} ± {sm['std']:5.2f}  | {row['prior_forced_choice']}  {row['chance']}  "
                      f"{row['majority']}  {row['questions']}")
    if track:
        from components.tracking import stage_run

        with stage_run("spread", prof.tracking.experiment, params={"seeds": seeds}) as run:
            run.log_metrics({f"spread.{a.replace(' ', '_')}.{kind}.{stat}": row[kind][stat]
                             for a, row in summary["per_attribute"].items()
                             for kind in ("forced_choice", "string_match") for stat in ("mean", "std")})
            run.log_artifact(out / SPREAD)


def _fan_outs() -> dict:
    """What the composed commands hand the stages (Typer context object): with DESTA_TASK_RUNNER set,
    `desta ingest` decodes its clips, `desta seeds` runs its Whisper chunks and `desta label` its units as
    Prefect tasks on that runner (flows/ingest.py, flows/seeds.py, flows/label.py)."""
    if not os.environ.get("DESTA_TASK_RUNNER"):
        return {}  # nothing to import: every command starts as fast as before
    from flows.ingest import run_ingest
    from flows.label import run_label
    from flows.seeds import run_seeds

    return {"ingest": run_ingest, "label": run_label, "seeds": run_seeds}


def main() -> None:
    """The `desta` entry point: a full disk, a refused write or an MLflow server lost mid-run ends in one
    line naming it, not a traceback."""
    try:
        app(obj=_fan_outs())
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as err:
        if err.errno not in DISK_ERRORS:
            raise
        where = err.filename or os.getcwd()
        fail_line(f"{err.strerror} writing {where}: free space there (or point data.root / --out at another "
                  f"disk) and re-run")
        sys.exit(1)
    except Exception as err:
        if type(err).__name__ != "MlflowException":  # by name: no mlflow import for every command
            raise
        uri = os.environ.get("MLFLOW_TRACKING_URI", "the local store")
        fail_line(f"MLflow ({uri}): {str(err).splitlines()[0][:500]}: check the tracking server and re-run "
                  "(or pass --no-track)")
        sys.exit(1)


if __name__ == "__main__":
    main()
