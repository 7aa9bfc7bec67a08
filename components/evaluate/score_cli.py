"""`desta score ...`: score benchmark results files; metrics JSON on stdout, errors on stderr."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from components.evaluate.mmau import DEFAULT_PREDICTION_KEY, MMAUFormatError, load_results, score_mmau

app = typer.Typer(help="Score a benchmark results file.", no_args_is_help=True, add_completion=False)


@app.callback()
def _group() -> None:
    """Score a benchmark results file."""  # keeps `mmau` a subcommand even while it is the only one


@app.command()
def mmau(
    results_json: Path = typer.Argument(..., help="MMAU results: the benchmark JSON array plus a prediction per row."),
    key: str = typer.Option(DEFAULT_PREDICTION_KEY, "--key", help="Row field holding the model's answer."),
) -> None:
    """MMAU accuracy per task, difficulty and sub-category, as the official evaluation.py computes it."""
    try:
        report = score_mmau(load_results(results_json), prediction_key=key)
    except MMAUFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    app()
