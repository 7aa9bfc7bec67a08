"""Seed rows in, DeSTA-AQA5M rows out (exactly: id, dataset, seed_description, prompt, response, messages)."""

from __future__ import annotations

import json
from typing import Any

ROW_KEYS = ("id", "dataset", "seed_description", "prompt", "response", "messages")
REQUIRED_SEED_KEYS = ("id", "dataset", "audio", "seed_description")
# The system prompt of DeSTA-AQA5M training rows (the released model's default).
ROW_SYSTEM = "Focus on the audio clips and instructions."
AUDIO_TOKEN = "<|AUDIO|>"


def row_id(clip_id: str, index: int | str) -> str:
    """Unique, deterministic per (clip, instruction index); a row drawn from no instruction names itself."""
    return f"{clip_id}-{index}"


def model_text(seed: dict[str, Any]) -> str | None:
    """The text a row gives the model beside the clip's audio: the seed's `model_text` (`seeds.model_text`:
    the corpus's transcript or Whisper's), else, for seeds written before it existed, the transcript."""
    return seed.get("model_text", seed.get("transcript")) or None


def aqa_row(seed: dict[str, Any], index: int | str, prompt: str, response: str) -> dict[str, Any]:
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
                "audios": [{"audio": seed["audio"], "text": model_text(seed)}],
            },
        ],
    }


def dumps_rows(rows: list[dict[str, Any]]) -> str:
    """JSONL text; fixed key order so equal rows are equal bytes."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
