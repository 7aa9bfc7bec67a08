"""MMAU (Sakshi113/MMAU `mmau-test-mini.json`, checked against the official repository).

A JSON array of `{id, audio_id, question, choices, answer, dataset, task, split, category,
sub-category, difficulty}`, `audio_id` like `./test-mini-audios/<id>.wav`. Prompt: the paper's
MCQ prompt (`components.vocab.mcq_prompt`: question + "Choices: …" + "Choose one of the options without any
explanation."). Scored with `score_mmau` (official string match).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.evaluate.benchmarks.base import (
    Adapter,
    BenchItem,
    BenchSet,
    OnBad,
    _Bad,
    _load,
    _require,
    _str_list,
    resolve_audio,
)
from components.evaluate.mmau import DIFFICULTIES, TASKS, score_mmau
from components.vocab import mcq_prompt


def load_mmau(path: str | Path, data_root: str | Path, on_bad: OnBad = "error", limit: int | None = None) -> BenchSet:
    """MMAU test / test-mini JSON: one multiple-choice question per row, audio at `audio_id`."""

    def parse(i: int, row: dict[str, Any], root: Path, _: bool) -> BenchItem:
        question = _require(row, "question")
        choices = _str_list(row, "choices")
        answer = _require(row, "answer")
        if answer not in choices:
            raise _Bad(f"answer {answer!r} is not one of the choices {choices}")
        if _require(row, "task") not in TASKS:
            raise _Bad(f"task {row['task']!r} is not one of {TASKS}")
        if _require(row, "difficulty") not in DIFFICULTIES:
            raise _Bad(f"difficulty {row['difficulty']!r} is not one of {DIFFICULTIES}")
        audio = _require(row, "audio_id")
        path = resolve_audio(root, audio)
        return BenchItem(i, audio, path, mcq_prompt({"question": question, "choices": choices}), dict(row))

    return _load("mmau", path, data_root, on_bad, limit, parse)


def mmau_scores(rows: Sequence[Mapping[str, Any]], prediction_key: str) -> dict[str, Any]:
    """The MMAU part of the report: `score_mmau` of the rows and its total accuracy."""
    mmau = score_mmau(rows, prediction_key=prediction_key)
    return {"mmau": mmau, "accuracy": mmau["total"]["accuracy"]}


ADAPTER = Adapter("mmau", load_mmau, mmau_scores, max_new_tokens=32)
