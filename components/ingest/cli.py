"""`desta ingest`: decode, check and shard the configured sources (components/ingest/run.py).

Where the clips are decoded is the caller's: the composed `desta` (flows/cli.py) hands over a decoder in
the Typer context object (`{"ingest": fn(sources, out, data_root, params, progress) -> IngestReport}`) when
a task runner is configured; without one, a local process pool. Either way the same driver, the same bytes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from components.console import ParamsOpt, console, fail, load_profile
from components.stage import data_dir, log_stage


def ingest_command(
    ctx: typer.Context,
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
    from components.atomic import atomic_write_text
    from components.ingest.embedded import corpus_card
    from components.ingest.run import QUARANTINE, STATS, ingest_stage

    prof = load_profile(params, track=track)
    cfg = prof.ingest
    sources = source or cfg.sources
    out = data_dir(prof, out, "ingest")
    t0 = time.perf_counter()
    try:
        fan_out = (ctx.obj or {}).get("ingest")  # the composed `desta` (flows/cli.py), with a task runner set
        report = (fan_out(sources, out, data_root, params, True) if fan_out else
                  ingest_stage(cfg, prof.data.sample_rate, out, sources, data_root, workers))
    except (ValueError, FileNotFoundError, NotADirectoryError, RuntimeError) as err:
        fail(str(err))  # an unknown source, a damaged earlier output, inputs changed mid-run
    seconds = time.perf_counter() - t0
    atomic_write_text(out / "corpus_card.md", corpus_card(sources))
    stats = report.as_dict()
    reasons = ", ".join(f"{k}: {v}" for k, v in stats["quarantined_by_reason"].items()) or "none"
    console.print(
        f"[green]ingest[/] accepted {stats['accepted']}, quarantined {stats['quarantined']} ({reasons}), "
        f"total {stats['total']} inputs; decoded {report.decoded}, reused {report.reused}; "
        f"{stats['accepted_audio_seconds']:.0f} s of audio in {seconds:.1f} s -> {out}"
    )
    if stats["accepted"] == 0 or stats["accepted"] < cfg.min_accepted_fraction * stats["total"]:
        top = sorted(stats["quarantined_by_reason"].items(), key=lambda kv: -kv[1])[:3]
        why = ", ".join(f"{k} {v}" for k, v in top) or "no inputs found"
        fail(f"ingest accepted {stats['accepted']} of {stats['total']} inputs (ingest.min_accepted_fraction "
             f"{cfg.min_accepted_fraction}): nothing to pass on. Top reasons: {why}; every rejected input is in "
             f"{out / QUARANTINE}")
    if track:
        metrics = stats | {"decoded": report.decoded, "reused": report.reused, "wall_seconds": seconds}
        log_stage("ingest", prof, {"ingest": cfg.model_dump(mode="json")}, metrics=metrics,
                  artifacts=[out / STATS, out / QUARANTINE, out / "corpus_card.md"])
