"""Seed rows in, DeSTA-AQA5M rows out (exactly: id, dataset, seed_description, prompt, response, messages)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.records import read_seeds

ROW_KEYS = ("id", "dataset", "seed_description", "prompt", "response", "messages")
REQUIRED_SEED_KEYS = ("id", "dataset", "audio", "seed_description")
# The system prompt of DeSTA-AQA5M training rows (the released model's default).
ROW_SYSTEM = "Focus on the audio clips and instructions."
AUDIO_TOKEN = "<|AUDIO|>"


def read_seed_rows(path: Path) -> list[dict[str, Any]]:
    """Seed rows from a seeds output dir (`shards/seeds-*.jsonl`) or any JSONL file; checked."""
    if not path.exists():
        raise FileNotFoundError(f"seeds not found: {path}")
    rows = read_seeds(path)
    seen: set[str] = set()
    for n, r in enumerate(rows, 1):
        missing = [k for k in REQUIRED_SEED_KEYS if not isinstance(r.get(k), str) or not r[k]]
        if missing:
            raise ValueError(f"{path}: seed row {n} lacks {', '.join(missing)}")
        if r["id"] in seen:
            raise ValueError(f"{path}: duplicate seed id {r['id']!r}")
        seen.add(r["id"])
    return rows


def row_id(clip_id: str, index: int) -> str:
    """Unique, deterministic per (clip, instruction index)."""
    return f"{clip_id}-{index}"


def aqa_row(seed: dict[str, Any], index: int, prompt: str, response: str) -> dict[str, Any]:
    """One DeSTA-AQA5M row; `audio` stays relative to the data root."""
    return {
        "id": row_id(seed["id"], index),
        "dataset": seed["dataset"],
        "seed_description": seed["seed_description"],
        "prompt": prompt,
        "response": response,
        "messages": [
            {"role": "system", "content": ROW_SYSTEM},
            {
                "role": "user",
                "content": f"{AUDIO_TOKEN}\n{prompt}",
                "audios": [{"audio": seed["audio"], "text": seed.get("transcript") or None}],
            },
        ],
    }


def dumps_rows(rows: list[dict[str, Any]]) -> str:
    """JSONL text; fixed key order so equal rows are equal bytes."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
