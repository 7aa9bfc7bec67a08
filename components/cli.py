"""`desta`: the one CLI. Every DVC stage calls a subcommand here; flows call DVC."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console

from components.config import ConfigError, load_params

app = typer.Typer(
    help="DeSTA2.5-Audio pipeline: ingest -> seeds -> label -> train -> evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
ParamsOpt = typer.Option(None, "--params", help="params.yaml to use (default: ./params.yaml or $DESTA_PARAMS).")

# Stages whose implementation lands in a later issue. Each says so and exits non-zero.
PENDING: dict[str, tuple[str, int]] = {}


def fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _pending_command(name: str, help_text: str, issue: int):
    def command(args: Optional[list[str]] = typer.Argument(None, hidden=True)) -> None:  # noqa: UP045
        fail(f"`desta {name}` is not built yet (tracked in issue #{issue}).", code=2)

    command.__doc__ = f"(not built yet) {help_text}"
    command.__name__ = name
    return command


from components.evaluate.score_cli import app as score_app  # noqa: E402
from components.stack.cli import app as stack_app  # noqa: E402

app.add_typer(score_app, name="score", help="Score a benchmark results file (e.g. `desta score mmau RESULTS.json`).")
from components.evaluate.bench_cli import app as bench_app  # noqa: E402
app.add_typer(bench_app, name="benchmark", help="Run the model on MMAU / Dynamic-SUPERB / Speech-IFEval files and score them.")
from components.label.cli import label_command  # noqa: E402
from components.lineage.cli import lineage_command  # noqa: E402
from components.train.cli import train_command  # noqa: E402

app.command("label")(label_command)
app.command("train")(train_command)
app.command("lineage")(lineage_command)
app.add_typer(stack_app, name="stack", help="Start, stop and check the local S3 + MLflow + Prefect stack.")

for _name, (_help, _issue) in PENDING.items():
    app.command(
        _name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
    )(_pending_command(_name, _help, _issue))


@app.command()
def ingest(
    source: Optional[list[str]] = typer.Option(  # noqa: UP045
        None, "--source", help="'embedded', a directory, a lhotse recordings manifest or an AQA .jsonl; repeatable."
    ),
    out: Optional[Path] = typer.Option(None, help="Output directory (default: <data.root>/ingest)."),  # noqa: UP045
    data_root: Optional[Path] = typer.Option(None, help="Root that manifest/JSONL audio paths are relative to."),  # noqa: UP045
    workers: Optional[int] = typer.Option(None, help="Decoder processes (default: params ingest.workers)."),  # noqa: UP045
    params: Optional[Path] = ParamsOpt,  # noqa: UP045
    track: bool = typer.Option(True, help="Log the run to MLflow."),
) -> None:
    """Decode, check and convert audio to 16 kHz mono tar shards; rejects go to quarantine.jsonl."""
    from components.ingest.decode import Limits
    from components.ingest.embedded import EspeakSettings, corpus_card
    from components.ingest.run import QUARANTINE, STATS, ingest as run_ingest
    from components.ingest.sources import resolve_sources

    prof = _profile(params)
    cfg = prof.ingest
    sources = source or cfg.sources
    out = out or Path(prof.data.root) / "ingest"
    t0 = time.perf_counter()
    try:
        espeak = EspeakSettings(**cfg.embedded.model_dump())
        cands = resolve_sources(sources, data_root, espeak)
    except (ValueError, OSError) as err:
        fail(str(err))
    limits = Limits(cfg.min_duration, cfg.max_duration, cfg.silence_dbfs, prof.data.sample_rate)
    report = run_ingest(cands, out, limits, cfg.shard_max_mb * 2**20, workers or cfg.workers)
    seconds = time.perf_counter() - t0
    from components.atomic import atomic_write_text

    atomic_write_text(out / "corpus_card.md", corpus_card(sources))
    stats = report.as_dict()
    reasons = ", ".join(f"{k}: {v}" for k, v in stats["quarantined_by_reason"].items()) or "none"
    console.print(
        f"[green]ingest[/] accepted {stats['accepted']}, quarantined {stats['quarantined']} ({reasons}), "
        f"total {stats['total']} inputs; decoded {report.decoded}, reused {report.reused}; "
        f"{stats['accepted_audio_seconds']:.0f} s of audio in {seconds:.1f} s -> {out}"
    )
    if track:
        from components.tracking import stage_run

        with stage_run("ingest", prof.tracking.experiment, params={"ingest": cfg.model_dump(mode="json")}) as run:
            counts = {k: v for k, v in stats.items() if isinstance(v, (int, float))}
            run.log_metrics(counts | {"decoded": report.decoded, "reused": report.reused, "wall_seconds": seconds})
            run.log_artifact(out / STATS)
            run.log_artifact(out / QUARANTINE)
            run.log_artifact(out / "corpus_card.md")
            run.log_lineage()


@app.command()
def seeds(
    ingested: Optional[Path] = typer.Option(None, "--in", help="Ingest output dir (default: <data.root>/ingest)."),  # noqa: UP045
    out: Optional[Path] = typer.Option(None, help="Output dir (default: <data.root>/seeds)."),  # noqa: UP045
    params: Optional[Path] = ParamsOpt,  # noqa: UP045
    track: bool = typer.Option(True, help="Log the run to MLflow."),
) -> None:
    """Write a seed description for every accepted clip (Whisper transcripts + measured attributes)."""
    from components.seeds.run import REPORT, build_seeds

    prof = _profile(params)
    root = Path(prof.data.root)
    ingested, out = ingested or root / "ingest", out or root / "seeds"
    t0 = time.perf_counter()
    try:
        report = build_seeds(ingested, root, out, prof.models.whisper, prof.seeds, prof.evaluate.heldout_fraction)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    seconds = time.perf_counter() - t0
    wer = ", ".join(f"{k} {v['wer']:.3f} (n={v['n']})" for k, v in report["whisper_wer_on_known_transcripts"].items())
    agree = ", ".join(f"{k} {v['agree']}" for k, v in report["measured_vs_espeak_settings"].items())
    console.print(
        f"[green]seeds[/] {report['clips']} clips ({report['speech']} speech, {report['sound']} sound) in "
        f"{seconds:.1f} s -> {out}; split {report['split']}\n  whisper WER: {wer or 'n/a'}\n  measured vs espeak settings: {agree or 'n/a'}"
    )
    if track:
        from components.tracking import stage_run

        with stage_run("seeds", prof.tracking.experiment, params={"seeds": prof.seeds.model_dump(mode="json")}) as run:
            metrics = {f"wer.{k}": v["wer"] for k, v in report["whisper_wer_on_known_transcripts"].items()}
            metrics |= {f"agree.{k.replace(' ', '_')}": v["agree"] for k, v in report["measured_vs_espeak_settings"].items()
                        if v["agree"] is not None}
            run.log_metrics(metrics | {"clips": report["clips"], "wall_seconds": seconds})
            run.log_artifact(out / REPORT)
            run.log_lineage()


@app.command()
def evaluate(
    model: Optional[Path] = typer.Option(None, help="Trained model dir (default: <data.root>/train/model)."),  # noqa: UP045
    seeds_dir: Optional[Path] = typer.Option(None, "--seeds", help="Seeds dir (default: <data.root>/seeds)."),  # noqa: UP045
    out: Optional[Path] = typer.Option(None, help="Output dir (default: <data.root>/evaluate)."),  # noqa: UP045
    params: Optional[Path] = ParamsOpt,  # noqa: UP045
    track: bool = typer.Option(True, help="Log to MLflow and apply the promotion gate."),
    progress: bool = typer.Option(True, help="Show the progress bar."),
) -> None:
    """Evaluate on the held-out split (attribute MCQ, WER, instruction following) and apply the gate."""
    import json as _json

    from components.evaluate.run import METRICS, PLOT_ACCURACY, PLOT_GENDER, PREDICTIONS, evaluate_model
    from components.model.desta import DestaModel
    from components.seeds.run import read_seeds

    prof = _profile(params)
    root = Path(prof.data.root)
    model, seeds_dir, out = model or root / "train" / "model", seeds_dir or root / "seeds", out or root / "evaluate"
    if not (model / "config.json").is_file():
        fail(f"no trained model at {model}: run `desta train` first")
    t0 = time.perf_counter()
    try:
        m = DestaModel.from_pretrained(model)
        metrics = evaluate_model(m, read_seeds(seeds_dir), root, out, prof.evaluate.max_questions,
                                 prof.evaluate.batch_size, show_progress=progress)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    seconds = time.perf_counter() - t0
    per = metrics["per_attribute"]
    console.print(f"[green]evaluate[/] {metrics['questions']} questions in {seconds:.0f} s -> {out}")
    for attr in per["string_match"]:
        console.print(f"  {attr:16s} string-match {per['string_match'][attr]:6.2f}  forced-choice "
                      f"{per['forced_choice'][attr]:6.2f}  | text-only prior {per['prior_string_match'][attr]:6.2f} / "
                      f"{per['prior_forced_choice'][attr]:6.2f}  | chance {per['chance'].get(attr)}")
    console.print(f"  transcript WER {metrics['transcript_wer']}; IF audio {metrics['if_rate_audio']} vs text "
                  f"{metrics['if_rate_text']} -> forgetting {metrics['forgetting_rate']}")
    if not track:
        return
    from components.evaluate.gate import apply_gate
    from components.tracking import stage_run

    run_info = model.parent / "checkpoints" / "run.json"
    version = _json.loads(run_info.read_text()).get("registered_version") if run_info.is_file() else None
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    with stage_run("evaluate", prof.tracking.experiment, params={"evaluate": prof.evaluate.model_dump(mode="json")},
                   tags={"desta.model_version": version or "unregistered"}) as run:
        run.log_lineage()
        run.log_metrics(numbers | {f"attr.{k.replace(' ', '_')}.{kind}": v for kind, table in per.items()
                                   for k, v in table.items() if v is not None} | {"wall_seconds": seconds})
        for name in (METRICS, PREDICTIONS, PLOT_ACCURACY, PLOT_GENDER):
            run.log_artifact(out / name, str(Path("evaluate") / Path(name).parent) if "/" in name else "evaluate")
        if version is None:
            console.print("[yellow]no registered model version recorded: promotion gate skipped[/]")
            return
        decision = apply_gate(prof.tracking.registered_model, version, numbers, prof.evaluate.primary_metric,
                              prof.evaluate.promote_margin, prof.evaluate.forgetting_bound)
        run.set_tags({"desta.gate.promoted": decision.promote, "desta.gate.reason": decision.reason})
    console.print(f"[green]gate[/] {prof.tracking.registered_model} v{version}: "
                  f"{'promoted to champion' if decision.promote else 'candidate'} ({decision.reason})")


def _profile(params: Optional[Path]):  # noqa: UP045
    try:
        return load_params(params).active
    except ConfigError as err:
        fail(str(err))


@app.command()
def setup(
    models_dir: Path = typer.Option(Path("models"), help="Where the prepared models are linked."),
) -> None:
    """Prepare the embedded models (once, cached) and link them under models/."""
    from components.embedded.prepare import prepare_all

    try:
        infos = prepare_all(models_dir, log=lambda m: console.print(f"[cyan]setup:[/] {m}"))
    except (FileNotFoundError, FileExistsError) as err:
        fail(str(err))
    for info in infos:
        console.print(
            f"[green]ready[/] {models_dir / info['name']} <- {info['package']}=={info['version']} "
            f"sha256:{info['sha256'][:12]}"
        )


@app.command()
def config(params: Optional[Path] = ParamsOpt) -> None:  # noqa: UP045
    """Validate params.yaml and print the active profile as JSON."""
    try:
        p = load_params(params)
    except ConfigError as err:
        fail(str(err))
    print(json.dumps({"profile": p.profile, **p.active.model_dump(mode="json")}, indent=2))


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
    from flows.noop import finish_noop, up_to_date
    from flows.services import ServiceUnavailable, check_prefect

    t0 = time.perf_counter()
    root = Path.cwd()
    try:
        if not overrides and not always_flow and up_to_date(root):
            result = finish_noop(root, push)
        else:
            if os.environ.get("PREFECT_API_URL"):
                check_prefect(os.environ["PREFECT_API_URL"])  # else each API call retries for minutes
            from flows.retrain import retrain as retrain_flow

            result = retrain_flow(overrides=overrides, push=push, cwd=str(root))
    except (ConfigError, DvcError, ServiceUnavailable) as err:
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
    root = Path(_profile(None).data.root)
    metrics = root / "evaluate" / "metrics.json"
    if metrics.is_file():
        data = json.loads(metrics.read_text())
        keys = ("mcq_accuracy", "mcq_forced_choice_accuracy", "transcript_wer", "if_rate_audio", "forgetting_rate")
        console.print("[green]evaluate[/] " + ", ".join(f"{k} {data.get(k)}" for k in keys if k in data))
    else:
        console.print(f"[yellow]no evaluation metrics yet ({metrics})[/]")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
