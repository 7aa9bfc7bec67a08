"""The JSONL records one stage hands to the next: the ingest manifest and the seed shards.

Each stage reads its inputs through here, never through another stage's module, so a stage's code
can change without touching its readers (and DVC re-runs only the stage whose code changed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.jsonl"  # in the ingest output dir: one row per accepted clip
SEED_SHARD_DIR = "shards"  # in the seeds output dir
SEED_SHARD_GLOB = "seeds-*.jsonl"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every row of a JSONL file ([] when it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_seeds(seeds_dir: Path) -> list[dict[str, Any]]:
    """All seed rows of a seeds output directory (or one JSONL file), in order."""
    files = [seeds_dir] if seeds_dir.is_file() else sorted((seeds_dir / SEED_SHARD_DIR).glob(SEED_SHARD_GLOB))
    return [r for f in files for r in read_jsonl(f)]


TRAIN_RUN = Path("checkpoints") / "run.json"  # in the train output dir: fingerprint, MLflow run, registered version


def registered_version(model_dir: Path) -> str | None:
    """The model version `desta train` registered for the export in `model_dir` (`<train out>/model`), if any."""
    run_info = model_dir.parent / TRAIN_RUN
    return json.loads(run_info.read_text()).get("registered_version") if run_info.is_file() else None
