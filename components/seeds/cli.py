"""`desta seeds`: a seed description per accepted clip (components/seeds/run.py).

Where Whisper's chunks run is the caller's: the composed `desta` (flows/cli.py) hands over a runner in
the Typer context object (`{"seeds": fn(ingested, out, params, progress) -> report}`) when a task runner
is configured; without one they run here. Either way the same driver, the same shards.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from components.console import ParamsOpt, console, fail, load_profile
from components.stage import data_dir, log_stage


def seeds_command(
    ctx: typer.Context,
    ingested: Optional[Path] = typer.Option(None, "--in", help="Ingest output dir (default: <data.root>/ingest)."),  # noqa: UP045
    out: Optional[Path] = typer.Option(None, help="Output dir (default: <data.root>/seeds)."),  # noqa: UP045
    params: Optional[Path] = ParamsOpt,  # noqa: UP045
    track: bool = typer.Option(True, help="Log the run to MLflow."),
) -> None:
    """Write a seed description for every accepted clip (Whisper transcripts + measured attributes)."""
    from components.seeds.run import REPORT, seeds_for_profile

    prof = load_profile(params, track=track)
    ingested, out = data_dir(prof, ingested, "ingest"), data_dir(prof, out, "seeds")
    t0 = time.perf_counter()
    try:
        fan_out = (ctx.obj or {}).get("seeds")
        report = fan_out(ingested, out, params, True) if fan_out else seeds_for_profile(prof, ingested, out)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        fail(str(err))
    seconds = time.perf_counter() - t0
    wers, agreement = report["whisper_wer_on_known_transcripts"], report["metadata_vs_signal"]
    wer = ", ".join(f"{k} {v['wer']:.3f} (n={v['n']})" for k, v in wers.items())
    agree = ", ".join(f"{k} {v['agree']}" for k, v in agreement.items())
    probes = (report.get("learnability") or {}).get("attributes", {})
    heard = ", ".join(f"{k} {v['probe']} (majority {v['majority']})" for k, v in probes.items())
    console.print(
        f"[green]seeds[/] {report['clips']} clips ({report['speech']} speech, {report['sound']} sound, {report['music']} music) in "
        f"{seconds:.1f} s -> {out}; split {report['split']}\n  whisper WER: {wer or 'n/a'}\n  metadata agrees with the signal: {agree or 'n/a'}"
        f"\n  probe on the encoder's features, held-out voices: {heard or 'off (seeds.probe_clips: 0)'}"
    )
    if track:
        metrics = {f"wer.{k}": v["wer"] for k, v in wers.items()}
        metrics |= {f"agree.{k.replace(' ', '_')}": v["agree"] for k, v in agreement.items()}
        metrics |= {f"probe.{k.replace(' ', '_')}": v["probe"] for k, v in probes.items()}
        log_stage("seeds", prof, {"seeds": prof.seeds.model_dump(mode="json")},
                  metrics=metrics | {"clips": report["clips"], "wall_seconds": seconds}, artifacts=[out / REPORT])
