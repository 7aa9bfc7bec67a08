"""Score an MMAU results file the way the official MMAU `evaluation.py` does.

Matched against Sakshi113/MMAU evaluation.py (last changed in 74682927, Jan 2025; repo HEAD
110127f). Behaviour reproduced from it:

- Rows without the prediction key are skipped: counted in no denominator (reported here as
  `skipped`; upstream's "No prediction count" is dead code and always prints 0).
- An empty or punctuation-only prediction is scored, as wrong.
- Task rows are always sound/music/speech and difficulty rows easy/hard/medium, in that order,
  with accuracy 0.0 when n == 0 (upstream prints "0.00% over 0 samples"); sub-categories appear
  in first-seen order and rows without one (missing or null) are left out of that table only.
- Accuracy is `(correct / n) * 100` formatted with two decimals, in that operation order.

Where upstream crashes we raise `MMAUFormatError` instead: a null or non-string prediction,
an unknown task or difficulty, no scored rows at all, or a top level that is not a list.

The key: upstream's README and its earlier code (6097b91) read `model_prediction`; the current
code reads `model_output`. `model_prediction` is the default here; pass `prediction_key` to
score `model_output` (files such as DeSTA2.5-Audio's carry both: raw output vs. extracted choice).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from components.evaluate.scorers import string_match

TASKS = ("sound", "music", "speech")
DIFFICULTIES = ("easy", "hard", "medium")
DEFAULT_PREDICTION_KEY = "model_prediction"


class MMAUFormatError(ValueError):
    """The results file cannot be scored (the official scorer would crash or mis-read it)."""


def _percent(correct: int, n: int) -> float:
    # Same expression and 2-decimal formatting as upstream, so ties round identically.
    return float(f"{(correct / n) * 100:.2f}") if n > 0 else 0.0


def _table(counts: Mapping[str, list[int]]) -> dict[str, dict[str, float | int]]:
    return {name: {"accuracy": _percent(c, n), "n": n} for name, (c, n) in counts.items()}


def _check_row(i: int, row: Mapping[str, Any], key: str) -> None:
    """Raise MMAUFormatError naming the row and field if a scored row is unusable."""
    where = f"row {i}"
    if not isinstance(row[key], str):
        raise MMAUFormatError(
            f"{where}: {key!r} is {type(row[key]).__name__}, not a string "
            "(write \"\" for an empty answer, or drop the key to skip the row)"
        )
    for field in ("answer", "task", "difficulty", "choices"):
        if field not in row:
            raise MMAUFormatError(f"{where}: missing {field!r}")
    if not isinstance(row["answer"], str):
        raise MMAUFormatError(f"{where}: 'answer' must be a string")
    choices = row["choices"]
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise MMAUFormatError(f"{where}: 'choices' must be a list of strings")
    if row["task"] not in TASKS:
        raise MMAUFormatError(f"{where}: task {row['task']!r} is not one of {TASKS}")
    if row["difficulty"] not in DIFFICULTIES:
        raise MMAUFormatError(f"{where}: difficulty {row['difficulty']!r} is not one of {DIFFICULTIES}")
    sub = row.get("sub-category")
    if sub is not None and not isinstance(sub, str):
        raise MMAUFormatError(f"{where}: 'sub-category' must be a string or null")


def score_mmau(rows: Iterable[Mapping[str, Any]], prediction_key: str = DEFAULT_PREDICTION_KEY) -> dict[str, Any]:
    """Per-task, per-difficulty, per-sub-category and total accuracy (percent, 2 decimals)."""
    tasks = {t: [0, 0] for t in TASKS}
    diffs = {d: [0, 0] for d in DIFFICULTIES}
    subcats: dict[str, list[int]] = {}
    correct = total = skipped = 0
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise MMAUFormatError(f"row {i}: expected a JSON object, got {type(row).__name__}")
        if prediction_key not in row:
            skipped += 1
            continue
        _check_row(i, row, prediction_key)
        hit = int(string_match(row["answer"], row[prediction_key], row["choices"]))
        counters = [tasks[row["task"]], diffs[row["difficulty"]]]
        if row.get("sub-category") is not None:
            counters.append(subcats.setdefault(row["sub-category"], [0, 0]))
        for counter in counters:
            counter[0] += hit
            counter[1] += 1
        correct += hit
        total += 1
    if total == 0:
        raise MMAUFormatError(f"no row has a {prediction_key!r} field; nothing to score ({skipped} rows skipped)")
    return {
        "task": _table(tasks),
        "difficulty": _table(diffs),
        "sub-category": _table(subcats),
        "total": {"accuracy": _percent(correct, total), "n": total},
        "skipped": skipped,
    }


def load_results(path: str | Path) -> list[Any]:
    """Read an MMAU results file: one JSON array of row objects (UTF-8)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise MMAUFormatError(f"{path}: no such file") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MMAUFormatError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, list):
        raise MMAUFormatError(f"{path}: top level must be a JSON array of rows, got {type(data).__name__}")
    return data
