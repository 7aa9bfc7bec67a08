"""The JSONL records one stage hands to the next: the ingest manifest, the seed and label shards.

Each stage reads its inputs through here, never through another stage's module, so a stage's code
can change without touching its readers (and DVC re-runs only the stage whose code changed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MANIFEST = "manifest.jsonl"  # in the ingest output dir: one row per accepted clip
SEED_SHARD_DIR = "shards"  # in the seeds output dir
SEED_SHARD_GLOB = "seeds-*.jsonl"
LABEL_SHARD_DIR = "shards"  # in the label output dir
LABEL_PROVENANCE = "provenance.json"  # beside the label shards, written last: lists the shards of a finished run


def clip_member(clip_id: str) -> str:
    """A clip's member name in its ingest tar shard; the clip's reference ends with it (`audio.audio_ref`)."""
    return f"{clip_id}.flac"


def rewrite(writer: str) -> str:
    """What to do about a damaged stage file: have `writer` write it again, or restore it from DVC."""
    return f"the file is damaged; re-run {writer} (or `dvc pull` / `dvc checkout` it)"


class DamagedFile(ValueError):
    """A file that cannot be read as written (a torn copy, an edit by hand). `where` names the file (and
    line) and what is wrong; the message adds what to do."""

    def __init__(self, where: str, advice: str | None = None) -> None:
        super().__init__(f"{where}: {advice}" if advice else where)
        self.where = where


def iter_jsonl(path: Path, advice: str | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a JSONL file, one at a time; a line that is not JSON raises DamagedFile naming the file
    and line."""
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise DamagedFile(f"{path}:{n}: not a JSON line ({err.msg}, column {err.colno})", advice) from None


def jsonl_rows(path: Path, advice: str | None = None) -> list[dict[str, Any]]:
    """Every row of a JSONL file (`iter_jsonl`, as a list)."""
    return list(iter_jsonl(path, advice))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every row of a stage's JSONL file ([] when it does not exist)."""
    return jsonl_rows(path, rewrite("the stage that wrote it")) if path.is_file() else []


def seed_files(seeds: Path) -> list[Path]:
    """The seed shards of a seeds output directory in order, or `seeds` itself when it is one JSONL file."""
    return [seeds] if seeds.is_file() else sorted((seeds / SEED_SHARD_DIR).glob(SEED_SHARD_GLOB))


def iter_seeds(seeds: Path) -> Iterator[dict[str, Any]]:
    """The seed rows of a seeds output directory (or one JSONL file), in order, one at a time: a reader that
    keeps only what it needs holds no more than that (5M rows are ~18 GB as dicts)."""
    for f in seed_files(seeds):
        yield from iter_jsonl(f, rewrite("the stage that wrote it"))


def read_seeds(seeds_dir: Path) -> list[dict[str, Any]]:
    """All seed rows of a seeds output directory (or one JSONL file), in order."""
    return list(iter_seeds(seeds_dir))


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
