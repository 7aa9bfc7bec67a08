"""Seed rows in the seeds stage's format, made up in code (tests do not depend on data/)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from components.config import LabelConfig
from components.label.cache import CACHE_FILE

# Small but real: the embedded SmolLM2-135M, a handful of seeds, short answers. One torch thread:
# on a shared 2-core box two spinning OpenMP threads lose 5-30x when a neighbour takes a core.
TEST_LABEL = {"batch_size": 4, "max_new_tokens": 24, "max_retries": 1, "shard_rows": 8, "threads": 1}

SENTENCES = [
    "The bus was late because of heavy traffic.", "Please leave a message after the tone.",
    "My favourite season is autumn.", "Press one to send this message.", "The library closes early today.",
    "Could you repeat that, please?", "We will meet at the station at nine.", "The coffee is too hot to drink.",
    "Thank you for calling, goodbye.", "The conference will begin when the leader arrives.",
    "I left my keys on the kitchen table.", "Your call is important to us.",
]
SOUNDS = ["door_wood_knock", "bell", "phone_ring", "dialog_warning", "camera_shutter", "glass_break"]
LEVELS = ["Very low", "Low", "Medium", "High", "Very high"]
SPEEDS = ["Very slow", "Slow", "Medium", "Fast", "Very fast"]


def seed_rows(n: int, start: int = 0, dataset: str = "synthetic") -> list[dict[str, Any]]:
    """n seed rows (about one in five a sound), ids stable per index."""
    rows = []
    for i in range(start, start + n):
        cid = hashlib.sha256(f"clip-{i}".encode()).hexdigest()[:20]
        audio = f"ingest/shards/shard-000000.tar/{cid}.flac"
        if i % 5 == 4:
            cat = SOUNDS[i % len(SOUNDS)]
            desc = f"[00:00-00:0{1 + i % 8}] (Audio category: {cat}, Duration: {1 + i % 8}.0)"
            rows.append({"id": cid, "dataset": dataset, "audio": audio, "transcript": None,
                         "seed_description": desc, "kind": "sound"})
            continue
        text = SENTENCES[i % len(SENTENCES)]
        dur = 1 + i % 6
        gender = "Female" if i % 2 else "Male"
        desc = (f"[00:00-00:0{dur}] {text} (Emotion: Neutral, Gender: {gender}, Pitch: {LEVELS[i % 5]}, "
                f"Volume: {LEVELS[(i // 5) % 5]}, Speaking speed: {SPEEDS[(i // 3) % 5]}, Duration: {dur}s)")
        rows.append({"id": cid, "dataset": dataset, "audio": audio, "transcript": text,
                     "seed_description": desc, "kind": "speech"})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def label_cfg(**over: object) -> LabelConfig:
    return LabelConfig(**{**TEST_LABEL, **over})


def shard_bytes(out: Path) -> dict[str, bytes]:
    """Every file under <out>/shards (rows and provenance), by name."""
    return {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir())}


def read_rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted((out / "shards").glob("label-*.jsonl")) for line in p.read_text().splitlines()]


def cached_responses(out: Path) -> int:
    """Responses a label run in `out` has committed to its cache (0 before the file or its table exists);
    read-only, so a test can poll it while the run writes."""
    db = out / "cache" / CACHE_FILE
    if not db.is_file():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as con:
            return con.execute("SELECT count(*) FROM responses").fetchone()[0]
    except sqlite3.Error:
        return 0


def seed_file(where: Path, rows: list[dict[str, Any]]) -> Path:
    """`rows` as a seeds JSONL file under `where` (what the label stage reads), named by its content."""
    text = "".join(json.dumps(r) + "\n" for r in rows)
    return write_jsonl(where / f"seeds-{hashlib.sha256(text.encode()).hexdigest()[:12]}.jsonl", rows)
