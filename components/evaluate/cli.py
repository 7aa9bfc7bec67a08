"""`desta evaluate`: the held-out evaluation (components/evaluate/run.py), then the promotion gate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from components.console import ParamsOpt, console, fail, load_profile
from components.stage import data_dir, numeric, tracked


def print_metrics(metrics: dict[str, Any], seconds: float, out: Path) -> None:
    per = metrics["per_attribute"]
    console.print(f"[green]evaluate[/] {metrics['questions']} questions in {seconds:.0f} s -> {out}")
    for attr in per["string_match"]:
        console.print(f"  {attr:16s} string-match {per['string_match'][attr]:6.2f}  forced-choice "
                      f"{per['forced_choice'][attr]:6.2f}  | text-only prior {per['prior_string_match'][attr]:6.2f} / "
                      f"{per['prior_forced_choice'][attr]:6.2f}  | chance {per['chance'].get(attr)}, one answer "
                      f"{per.get('majority', {}).get(attr)}")
    console.print(f"  transcript WER {metrics['transcript_wer']}; IF audio {metrics['if_rate_audio']} vs text "
                  f"{metrics['if_rate_text']} -> forgetting {metrics['forgetting_rate']}")


def evaluate_command(
    model: Optional[Path] = typer.Option(None, help="Trained model dir (default: <data.root>/train/model)."),  # noqa: UP045
    seeds_dir: Optional[Path] = typer.Option(None, "--seeds", help="Seeds dir (default: <data.root>/seeds)."),  # noqa: UP045
    out: Optional[Path] = typer.Option(None, help="Output dir (default: <data.root>/evaluate)."),  # noqa: UP045
    params: Optional[Path] = ParamsOpt,  # noqa: UP045
    track: bool = typer.Option(True, help="Log to MLflow and apply the promotion gate."),
    progress: bool = typer.Option(True, help="Show the progress bar."),
) -> None:
    """Evaluate on the held-out split (attribute MCQ, WER, instruction following) and apply the gate."""
    from components.evaluate.gate import apply_gate, gated_version
    from components.evaluate.outputs import OUTPUTS
    from components.evaluate.run import evaluate_trained

    prof = load_profile(params, track=track)
    model = data_dir(prof, model, "train/model")
    seeds_dir, out = data_dir(prof, seeds_dir, "seeds"), data_dir(prof, out, "evaluate")
    if not (model / "config.json").is_file():
        fail(f"no trained model at {model}: run `desta train` first")
    t0 = time.perf_counter()
    try:
        metrics = evaluate_trained(prof, model, seeds_dir, out, show_progress=progress)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    seconds = time.perf_counter() - t0
    print_metrics(metrics, seconds, out)
    if not track:
        return
    version, found = gated_version(model, prof.tracking.registered_model)
    numbers = numeric(metrics)
    per_attribute = {f"attr.{k.replace(' ', '_')}.{kind}": v for kind, table in metrics["per_attribute"].items()
                     for k, v in table.items()}
    artifacts = [(out / name, str(Path("evaluate") / Path(name).parent) if "/" in name else "evaluate")
                 for name in OUTPUTS]
    with tracked("evaluate", prof, {"evaluate": prof.evaluate.model_dump(mode="json")},
                 metrics=numbers | per_attribute | {"wall_seconds": seconds}, artifacts=artifacts,
                 tags={"desta.model_version": version or "unregistered"}) as run:
        if version is None:
            console.print(f"[yellow]no version of {prof.tracking.registered_model} matches this model "
                          f"({found}): promotion gate skipped[/]")
            return
        decision = apply_gate(prof.tracking.registered_model, version, numbers, prof.evaluate.primary_metric,
                              prof.evaluate.promote_margin, prof.evaluate.forgetting_bound)
        run.set_tags({"desta.gate.promoted": decision.promote, "desta.gate.reason": decision.reason})
    console.print(f"[green]gate[/] {prof.tracking.registered_model} v{version} ({found}): "
                  f"{'promoted to champion' if decision.promote else 'candidate'} ({decision.reason})")
