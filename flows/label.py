"""Label shards fanned out as Prefect tasks: one task per unit (= one output shard) of components.label.run.

components.label.run's one driver (`label`) splits the work into independent units and runs them with
a `map_units` function: `desta label` one after another in-process; here (`as_tasks`) each unit is a
task on the task runner DESTA_TASK_RUNNER names (flows/runners.py: threads, dask, ray). On threads the
units share one loaded backend (LabelJob guards the load), which suits the hf backend on one machine and
the openai/vllm-server backends (I/O bound).
On a cluster LabelJob pickles without its backend: each worker process loads its own once and keeps it
for every unit it runs.

Outputs are byte-identical to `desta label` (same units, same batches, same shards). Run alone:
`python -m flows.label --seeds data/seeds --out data/label [--params params.yaml]`. With
DESTA_TASK_RUNNER set, the composed `desta label` (and so the DVC stage) runs this flow (flows/cli.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from components.config import load_params
from components.label.run import Progress, label, run_unit
from components.label.units import LabelJob, Unit, UnitResult
from flows.runners import make_task_runner
from flows.settings import FlowSettings


# NO_CACHE: the inputs hold a loaded model; hashing them for Prefect's cache key would be slow and useless
# (the label stage has its own content-addressed response cache).
@task(task_run_name="label-{unit.name}", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def label_unit(unit: Unit, job: LabelJob) -> UnitResult:
    """One output shard; safe to retry (the shard is written by one atomic rename, responses are cached)."""
    return run_unit(unit, job)


def as_tasks(units: list[Unit], job: LabelJob, on_progress: Progress) -> list[UnitResult]:
    """Every unit as a `label_unit` task on the flow's task runner (the label driver's `map_units`);
    progress advances by a unit as its result comes back, in unit order."""
    get_run_logger().info("%d units (shards) of up to %d rows", len(units), job.cfg.shard_rows)
    results = []
    for unit, future in zip(units, label_unit.map(units, job=unmapped(job))):
        results.append(future.result())
        on_progress(unit.size, results[-1].completion_tokens)
    return results


@flow(name="label-shards", log_prints=True)
def label_shards(seeds: str, out: str, params: str | None = None, cache: str | None = None,
                 progress: bool = False) -> dict[str, Any]:
    """Label every unit of the seed rows as its own task; returns the stats `desta label` writes."""
    prof = load_params(Path(params) if params else None).active
    return label(Path(seeds), Path(out), prof.label, prof.models, Path(cache) if cache else None, show_progress=progress,
                 map_units=as_tasks)


def run_label(seeds: Path, out: Path, params: Path | None = None, cache: Path | None = None,
              progress: bool = False, settings: FlowSettings | None = None) -> dict[str, Any]:
    """`label_shards` on the task runner of `settings` (default: from the environment)."""
    runner = make_task_runner(settings)
    return label_shards.with_options(task_runner=runner)(
        str(seeds), str(out), str(params) if params else None, str(cache) if cache else None, progress
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m flows.label", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=Path, default=None, help="seeds dir or JSONL (default <data.root>/seeds)")
    p.add_argument("--out", type=Path, default=None, help="output dir (default <data.root>/label)")
    p.add_argument("--params", type=Path, default=None)
    p.add_argument("--cache", type=Path, default=None)
    a = p.parse_args(argv)
    root = Path(load_params(a.params).active.data.root)
    stats = run_label(a.seeds or root / "seeds", a.out or root / "label", a.params, a.cache)
    print(json.dumps(stats, sort_keys=True))


if __name__ == "__main__":
    main()
