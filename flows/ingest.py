"""The ingest stage with its clips decoded as Prefect tasks (components/ingest/run.py).

`ingest_stage` (the one ingest driver) plans every input in this process (digests, reuse) and writes
every row and shard here, in input order; only the decoding of new inputs travels: each block's new
files, cut into chunks of DECODE_CHUNK, become `decode_chunk` tasks on the task runner DESTA_TASK_RUNNER
names (flows/runners.py). A task gets file paths (absolute: on a cluster the workers must see the same
filesystem) and returns the clips' FLAC bytes, so the shards, manifest and quarantine are byte-identical
to `desta ingest` in one process. With DESTA_TASK_RUNNER set, the composed `desta ingest` (and so the DVC
stage) runs this flow (flows/cli.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count
from pathlib import Path

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from components.config import load_params
from components.ingest.decode import Decoded, Limits, Rejected, decode_clip
from components.ingest.run import Decode, IngestReport, ingest_stage
from flows.runners import make_task_runner
from flows.settings import FlowSettings

DECODE_CHUNK = 32  # files per task: a block (components.ingest.run.BLOCK) is 64 tasks


@task(task_run_name="decode-{index}", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def decode_chunk(paths: list[str], limits: Limits, index: int) -> list[Decoded | Rejected]:
    """The clips of some files; nothing is written, so a retry simply runs it again."""
    return [decode_clip(Path(p), limits) for p in paths]


def task_decoder() -> Decode:
    """The driver's `decode`: a block's files as chunk tasks, results back in order as each chunk ends."""
    numbers = count()
    log = get_run_logger()

    def decode(paths: list[Path], limits: Limits) -> Iterator[Decoded | Rejected]:
        chunks = [[str(p) for p in paths[i:i + DECODE_CHUNK]] for i in range(0, len(paths), DECODE_CHUNK)]
        if chunks:
            log.info("decoding %d files in %d tasks", len(paths), len(chunks))
        index = [next(numbers) for _ in chunks]
        for future in decode_chunk.map(chunks, limits=unmapped(limits), index=index):
            yield from future.result()

    return decode


@flow(name="ingest-chunks", log_prints=True)
def ingest_chunks(sources: list[str], out: str, data_root: str | None = None, params: str | None = None,
                  progress: bool = False) -> IngestReport:
    """The ingest stage with the decoding as tasks; returns the report `desta ingest` prints."""
    prof = load_params(Path(params) if params else None).active
    return ingest_stage(prof.ingest, prof.data.sample_rate, Path(out), sources, Path(data_root) if data_root else None,
                        decode=task_decoder(), show_progress=progress)


def run_ingest(sources: list[str], out: Path, data_root: Path | None = None, params: Path | None = None,
               progress: bool = False, settings: FlowSettings | None = None) -> IngestReport:
    """`ingest_chunks` on the task runner of `settings` (default: from the environment)."""
    return ingest_chunks.with_options(task_runner=make_task_runner(settings))(
        list(sources), str(out), str(data_root) if data_root else None, str(params) if params else None, progress)
