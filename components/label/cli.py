"""`desta label`: the backbone LLM writes its own targets (components/label/run.py).

Also runnable alone: `python -m components.label.cli --seeds PATH --out DIR`. Where the units run is the
caller's: the composed `desta` (flows/cli.py) hands over a labeller in the Typer context object
(`{"label": fn(seeds, out, params, cache, progress) -> stats}`) when a task runner is configured; without
one they run here, one after another. Either way the same driver, the same shards.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

import typer

from components.console import ParamsOpt, console, fail, load_profile
from components.stage import data_dir, log_stage


def label_command(
    ctx: typer.Context,
    seeds: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--seeds", help="Seeds output dir (shards/seeds-*.jsonl) or a JSONL file (default: <data.root>/seeds)."
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Output dir (default: <data.root>/label)."),  # noqa: UP045
    cache: Optional[Path] = typer.Option(  # noqa: UP045
        None, "--cache", help="Response cache dir (default: label.cache_dir, else <out>/cache)."
    ),
    params: Optional[Path] = ParamsOpt,  # noqa: UP045
    track: bool = typer.Option(True, help="Log the run to MLflow."),
    progress: bool = typer.Option(True, help="Show the progress bar."),
) -> None:
    """The generator LLM writes the targets: DeSTA-AQA5M rows in shards, with cache, filters and provenance."""
    from components.label.generator import GeneratorDigestWarning, GeneratorMismatchWarning
    from components.label.run import PROVENANCE, SHARD_DIR, STATS, label
    from components.records import seed_files

    prof = load_profile(params, track=track)
    seeds, out = data_dir(prof, seeds, "seeds"), data_dir(prof, out, "label")
    if not seeds.exists() or not seed_files(seeds):  # before a cluster starts; the rows are checked as planned
        fail(f"no seed rows in {seeds}: run `desta seeds` first")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GeneratorMismatchWarning)
        warnings.simplefilter("always", GeneratorDigestWarning)
        try:
            fan_out = (ctx.obj or {}).get("label")
            stats = (fan_out(seeds, out, params, cache, progress) if fan_out else
                     label(seeds, out, prof.label, prof.models, cache_dir=cache, show_progress=progress))
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            fail(str(err))
    for w in caught:
        if issubclass(w.category, (GeneratorMismatchWarning, GeneratorDigestWarning)):
            console.print(f"[bold yellow]warning:[/] {w.message}")
    reasons = ", ".join(f"{k} {v}" for k, v in stats["filtered_by_reason"].items()) or "none"
    console.print(
        f"[green]label[/] {stats['rows_written']} rows ({stats['clips']} clips, {stats['units']} shards) -> {out}\n"
        f"  cache hits {stats['cache_hits']}, generated {stats['generated']} "
        f"(by attempt {stats['generated_by_attempt']}), filtered {stats['filtered']} ({reasons}), "
        f"quarantined {stats['quarantined']}\n"
        f"  {stats['completion_tokens']} new tokens, {stats['tokens_per_s']} tok/s, "
        f"{stats['rows_per_s']} rows/s over {stats['wall_seconds']:.1f} s; generator {stats['generator']} "
        f"({stats['generator_digest'][:19]})"
    )
    print(json.dumps(stats, sort_keys=True))
    if stats["rows_written"] == 0:
        fail(f"label wrote no rows from {stats['seed_rows']} seed rows ({stats['clips']} labelled: label.splits "
             f"{prof.label.splits}; filtered {stats['filtered']}: {reasons}; quarantined {stats['quarantined']}): "
             f"nothing to train on. Details in {out / STATS}")
    if track:
        log_stage("label", prof, {"label": prof.label.model_dump(mode="json"), "models.generator": stats["generator"]},
                  metrics=stats | {f"filtered.{k.replace(':', '.')}": v for k, v in stats["filtered_by_reason"].items()},
                  artifacts=[out / STATS, out / SHARD_DIR / PROVENANCE],
                  tags={"desta.generator_digest": stats["generator_digest"], "desta.self_generated": stats["self_generated"]})


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(label_command)

if __name__ == "__main__":
    app()
