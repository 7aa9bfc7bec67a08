"""The JSONL records one stage hands to the next: the ingest manifest, the seed and label shards.

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
LABEL_SHARD_DIR = "shards"  # in the label output dir
LABEL_PROVENANCE = "provenance.json"  # beside the label shards, written last: lists the shards of a finished run


def rewrite(writer: str) -> str:
    """What to do about a damaged stage file: have `writer` write it again, or restore it from DVC."""
    return f"the file is damaged; re-run {writer} (or `dvc pull` / `dvc checkout` it)"


class DamagedFile(ValueError):
    """A file that cannot be read as written (a torn copy, an edit by hand). `where` names the file (and
    line) and what is wrong; the message adds what to do."""

    def __init__(self, where: str, advice: str | None = None) -> None:
        super().__init__(f"{where}: {advice}" if advice else where)
        self.where = where


def jsonl_rows(path: Path, advice: str | None = None) -> list[dict[str, Any]]:
    """Every row of a JSONL file; a line that is not JSON raises DamagedFile naming the file and line."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DamagedFile(f"{path}:{n}: not a JSON line ({err.msg}, column {err.colno})", advice) from None
    return rows


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every row of a stage's JSONL file ([] when it does not exist)."""
    return jsonl_rows(path, rewrite("the stage that wrote it")) if path.is_file() else []


def read_seeds(seeds_dir: Path) -> list[dict[str, Any]]:
    """All seed rows of a seeds output directory (or one JSONL file), in order."""
    files = [seeds_dir] if seeds_dir.is_file() else sorted((seeds_dir / SEED_SHARD_DIR).glob(SEED_SHARD_GLOB))
    return [r for f in files for r in read_jsonl(f)]


def label_shards(label_dir: Path) -> list[Path] | None:
    """The shards a finished label run wrote into `label_dir` (None: no label layout there).

    Raises ValueError when the layout is there but the run did not finish (no provenance: killed, or the
    disk filled) or a listed shard is gone, so no reader takes part of a run for all of it."""
    shard_dir = label_dir / LABEL_SHARD_DIR
    if not shard_dir.is_dir():
        return None
    prov = shard_dir / LABEL_PROVENANCE
    if not prov.is_file():
        raise ValueError(f"{label_dir} holds an unfinished label run (no {LABEL_SHARD_DIR}/{LABEL_PROVENANCE}, "
                         f"which `desta label` writes last): re-run `desta label`")
    listed = [shard_dir / name for name in sorted(json.loads(prov.read_text())["shards"])]
    missing = [p.name for p in listed if not p.is_file()]
    if missing:
        raise ValueError(f"{label_dir}: shards listed in {LABEL_PROVENANCE} are missing ({', '.join(missing[:3])}): "
                         f"re-run `desta label`")
    return listed


TRAIN_RUN = Path("checkpoints") / "run.json"  # in the train output dir: fingerprint, MLflow run, registered version


def registered_version(model_dir: Path) -> str | None:
    """The model version `desta train` registered for the export in `model_dir` (`<train out>/model`), if any."""
    run_info = model_dir.parent / TRAIN_RUN
    return json.loads(run_info.read_text()).get("registered_version") if run_info.is_file() else None
