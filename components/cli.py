"""The component commands of `desta`, registered in one place; each body lives with its stage or block
(`components/<stage>/cli.py`). flows/cli.py adds the flow commands (retrain, run) on top: that is the
`desta` entry point. Heavy imports happen inside the commands, so every command starts fast."""

from __future__ import annotations

import typer

from components.config_cli import config_command
from components.embedded.cli import setup_command
from components.evaluate.bench_cli import app as bench_app
from components.evaluate.cli import evaluate_command
from components.evaluate.score_cli import app as score_app
from components.ingest.cli import ingest_command
from components.label.cli import label_command
from components.lineage.cli import lineage_command
from components.seeds.cli import seeds_command
from components.stack.cli import app as stack_app
from components.train.cli import train_command

app = typer.Typer(
    help="DeSTA2.5-Audio pipeline: ingest -> seeds -> label -> train -> evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for name, command in (("ingest", ingest_command), ("seeds", seeds_command), ("label", label_command),
                      ("train", train_command), ("evaluate", evaluate_command), ("lineage", lineage_command),
                      ("setup", setup_command), ("config", config_command)):
    app.command(name)(command)
app.add_typer(score_app, name="score", help="Score a benchmark results file (e.g. `desta score mmau RESULTS.json`).")
app.add_typer(bench_app, name="benchmark", help="Run the model on MMAU / Dynamic-SUPERB / Speech-IFEval files and score them.")
app.add_typer(stack_app, name="stack", help="Start, stop and check the local S3 + MLflow + Prefect stack.")
