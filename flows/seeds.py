"""The seeds stage with Whisper's chunks fanned out as Prefect tasks (components/seeds/run.py).

`build_seeds` (the one seeds driver) measures every clip here and cuts the clips Whisper must hear into
chunks of whole batches (`whisper_chunks`); each chunk is a `whisper_chunk` task on the task runner
DESTA_TASK_RUNNER names (flows/runners.py). Each worker process loads its Whisper once and keeps it
for every chunk it runs; a chunk reads its clips from the data root itself, so only references travel.
The shards and the report are byte-identical to `desta seeds` (same batches, same text). With
DESTA_TASK_RUNNER set, the composed `desta seeds` (and so the DVC stage) runs this flow (flows/cli.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from components.config import load_params
from components.seeds.run import ChunkResult, WhisperJob, seeds_for_profile, transcribe_chunk
from flows.runners import make_task_runner
from flows.settings import FlowSettings


@task(task_run_name="whisper-{index}", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def whisper_chunk(refs: list[str], job: WhisperJob, index: int) -> ChunkResult:
    """One chunk's transcripts; nothing is written, so a retry simply runs it again."""
    return transcribe_chunk(refs, job)


def as_tasks(chunks: list[list[str]], job: WhisperJob, advance) -> list[ChunkResult]:
    """Every chunk as a task on the flow's runner; progress advances as each result comes back, in order."""
    get_run_logger().info("%d Whisper chunks of up to %d clips", len(chunks), max(map(len, chunks), default=0))
    results = []
    for refs, future in zip(chunks, whisper_chunk.map(chunks, job=unmapped(job), index=range(len(chunks)))):
        results.append(future.result())
        advance(len(refs))
    return results


@flow(name="seeds-chunks", log_prints=True)
def seeds_chunks(ingested: str, out: str, params: str | None = None, progress: bool = False) -> dict[str, Any]:
    """The seeds stage with Whisper's chunks as tasks; returns the report `desta seeds` writes."""
    prof = load_params(Path(params) if params else None).active
    return seeds_for_profile(prof, Path(ingested), Path(out), show_progress=progress, map_chunks=as_tasks)


def run_seeds(ingested: Path, out: Path, params: Path | None = None, progress: bool = False,
              settings: FlowSettings | None = None) -> dict[str, Any]:
    """`seeds_chunks` on the task runner of `settings` (default: from the environment)."""
    return seeds_chunks.with_options(task_runner=make_task_runner(settings))(
        str(ingested), str(out), str(params) if params else None, progress)
