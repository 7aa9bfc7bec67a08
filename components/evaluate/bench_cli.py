"""`desta benchmark ...`: run the model on an external benchmark from a local data root.

Writes the results file (MMAU results layout) and prints the scores as JSON on stdout; progress
and errors go to stderr. See components/evaluate/benchmarks/ (one module per layout) for the
layouts and the scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from components.console import fail, load_profile
from components.stage import data_dir

# The runners pull in torch: imported inside the commands so every other `desta` command starts fast.
BENCHMARKS = ("mmau", "dynamic-superb", "speech-ifeval")  # = components.evaluate.benchmarks.BENCHMARKS

app = typer.Typer(help="Run the model on an external benchmark and score it.", no_args_is_help=True,
                  add_completion=False)

DataRoot = typer.Option(..., "--data-root", help="Directory the file's audio paths are relative to.")
ModelOpt = typer.Option(None, "--model", help="Trained model dir (default: <data.root>/train/model of the active profile).")
OutOpt = typer.Option(None, "--out", help="Results JSON to write (default: <FILE stem>.results.json beside FILE).")
LimitOpt = typer.Option(None, "--limit", min=1, help="Only the first N rows of the file.")
BatchOpt = typer.Option(8, "--batch-size", min=1, help="Rows per generation batch.")
TokensOpt = typer.Option(None, "--max-new-tokens", min=1, help="Answer length cap (default: 32 for MCQ, 256 for Speech-IFEval).")
SkipOpt = typer.Option(False, "--skip-bad", help="Skip bad rows (listed in the report) instead of stopping at the first.")
ProgressOpt = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr.")
ParamsOpt = typer.Option(None, "--params", help="params.yaml for the default model dir.")


@app.callback()
def _group() -> None:
    """Run the model on an external benchmark and score it."""


def _model_dir(model: Path | None, params: Path | None) -> Path:
    return model if model is not None else data_dir(load_profile(params), None, "train/model")


def _run(benchmark: str, file: Path, data_root: Path, model: Path | None, out: Path | None, limit: int | None,
         batch_size: int, max_new_tokens: int | None, skip_bad: bool, progress: bool, params: Path | None,
         text_reference: bool = True, **loader_kwargs) -> None:
    from components.evaluate.benchmarks import LOADERS, BenchmarkFormatError, run_benchmark

    on_bad = "skip" if skip_bad else "error"
    try:
        bench = LOADERS[benchmark](file, data_root, on_bad=on_bad, limit=limit, **loader_kwargs)
    except BenchmarkFormatError as e:
        fail(str(e))
    model_dir = _model_dir(model, params)
    if not (model_dir / "config.json").is_file():
        fail(f"no trained model at {model_dir} (pass --model DIR or run `desta train`)")
    from components.model.desta import DestaModel

    out = out or file.with_name(f"{file.stem}.results.json")
    try:
        m = DestaModel.from_pretrained(model_dir)
        report = run_benchmark(m, bench, out, batch_size=batch_size, max_new_tokens=max_new_tokens, on_bad=on_bad,
                               text_reference=text_reference, show_progress=progress)
    except (BenchmarkFormatError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    report["model"] = str(model_dir)
    print(json.dumps(report, indent=2))


@app.command()
def mmau(
    file: Path = typer.Argument(..., help="MMAU JSON (e.g. mmau-test-mini.json)."),
    data_root: Path = DataRoot, model: Optional[Path] = ModelOpt, out: Optional[Path] = OutOpt,  # noqa: UP045
    limit: Optional[int] = LimitOpt, batch_size: int = BatchOpt, max_new_tokens: Optional[int] = TokensOpt,  # noqa: UP045
    skip_bad: bool = SkipOpt, progress: bool = ProgressOpt, params: Optional[Path] = ParamsOpt,  # noqa: UP045
) -> None:
    """MMAU multiple choice (paper prompt), scored as the official evaluation.py does."""
    _run("mmau", file, data_root, model, out, limit, batch_size, max_new_tokens, skip_bad, progress, params)


@app.command("dynamic-superb")
def dynamic_superb(
    file: Path = typer.Argument(..., help="A task's metadata.json, or a JSON/JSONL list of {file, instruction, label} rows."),
    data_root: Path = DataRoot, model: Optional[Path] = ModelOpt, out: Optional[Path] = OutOpt,  # noqa: UP045
    limit: Optional[int] = LimitOpt, batch_size: int = BatchOpt, max_new_tokens: Optional[int] = TokensOpt,  # noqa: UP045
    skip_bad: bool = SkipOpt, progress: bool = ProgressOpt, params: Optional[Path] = ParamsOpt,  # noqa: UP045
    task_name: Optional[str] = typer.Option(None, "--task-name", help="Task name for rows that name none."),  # noqa: UP045
) -> None:
    """Dynamic-SUPERB classification: accuracy by normalised label and by string match, per task."""
    _run("dynamic-superb", file, data_root, model, out, limit, batch_size, max_new_tokens, skip_bad, progress, params,
         task_name=task_name)


@app.command("speech-ifeval")
def speech_ifeval(
    file: Path = typer.Argument(..., help="Speech-IFEval JSONL (e.g. closed_ended_questions.jsonl)."),
    data_root: Path = DataRoot, model: Optional[Path] = ModelOpt, out: Optional[Path] = OutOpt,  # noqa: UP045
    limit: Optional[int] = LimitOpt, batch_size: int = BatchOpt, max_new_tokens: Optional[int] = TokensOpt,  # noqa: UP045
    skip_bad: bool = SkipOpt, progress: bool = ProgressOpt, params: Optional[Path] = ParamsOpt,  # noqa: UP045
    text_reference: bool = typer.Option(True, "--text-reference/--no-text-reference",
                                        help="Also answer from `textual_audio` with the backbone alone (forgetting rate)."),
) -> None:
    """Speech-IFEval instruction-following rate (and forgetting rate vs the text-only backbone)."""
    _run("speech-ifeval", file, data_root, model, out, limit, batch_size, max_new_tokens, skip_bad, progress, params,
         text_reference=text_reference)


@app.command()
def score(
    benchmark: str = typer.Argument(..., help=f"One of {', '.join(BENCHMARKS)}."),
    results_json: Path = typer.Argument(..., help="A results file written by `desta benchmark` (or by hand, same layout)."),
) -> None:
    """Score a results file again, without the model."""
    from components.evaluate.benchmarks import BenchmarkFormatError, score_results
    from components.evaluate.mmau import MMAUFormatError, load_results

    if benchmark not in BENCHMARKS:
        fail(f"unknown benchmark {benchmark!r}; one of {', '.join(BENCHMARKS)}")
    try:
        report = score_results(benchmark, load_results(results_json))
    except (MMAUFormatError, BenchmarkFormatError, ValueError) as e:
        fail(str(e))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    app()
