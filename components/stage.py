"""The one stage wrapper: what every stage command does around its `run.py`.

    prof = load_profile(params)                    # components/console.py
    out = data_dir(prof, out, "ingest")            # default dirs under data.root
    with one_writer(out, "ingest"): ...            # one writer per output directory
    with tracked("evaluate", prof, {...}, metrics=stats, artifacts=[...]) as run: ...
    log_stage("ingest", prof, {...}, metrics=stats, artifacts=[...])   # nothing more to log

`tracked` opens the stage's MLflow run (params, tags), logs its numeric stats and artifacts and then
its lineage (components/lineage), so every stage's run carries the same record.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from components.tracking import StageRun, stage_run

Artifact = Path | tuple[Path, str]  # a file or directory, optionally with its artifact folder


def data_dir(prof: Any, given: Path | None, name: str) -> Path:
    """`given`, else `<data.root>/<name>`: the default input and output directory of every stage."""
    return given or Path(prof.data.root) / name


def numeric(values: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a stats mapping (bools and None dropped): what MLflow takes as metrics."""
    return {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@contextmanager
def one_writer(out: Path, stage: str) -> Iterator[None]:
    """Hold `<out>/.<stage>.lock` while writing `out`: a second writer stops at once with a clear error."""
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / f".{stage}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RuntimeError(f"another `desta {stage}` is writing to {out}") from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def tracked(stage: str, prof: Any, params: Mapping[str, Any], *, metrics: Mapping[str, Any],
            artifacts: Sequence[Artifact] = (), tags: Mapping[str, Any] | None = None) -> Iterator[StageRun]:
    """The stage's MLflow run with its params and tags, numeric `metrics`, `artifacts` and lineage logged;
    the body may log more (e.g. the promotion gate's decision) before the run closes."""
    from components.lineage import log_stage_lineage

    with stage_run(stage, prof.tracking.experiment, params=params, tags=tags) as run:
        run.log_metrics(numeric(metrics))
        for item in artifacts:
            path, folder = item if isinstance(item, tuple) else (item, None)
            run.log_artifact(path, folder)
        log_stage_lineage(run, stage)
        yield run


def log_stage(stage: str, prof: Any, params: Mapping[str, Any], *, metrics: Mapping[str, Any],
              artifacts: Sequence[Artifact] = (), tags: Mapping[str, Any] | None = None) -> None:
    """`tracked` for a stage that has nothing more to log."""
    with tracked(stage, prof, params, metrics=metrics, artifacts=artifacts, tags=tags):
        pass
