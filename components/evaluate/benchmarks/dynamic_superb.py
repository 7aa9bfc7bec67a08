"""Dynamic-SUPERB (Phase-2 local layout, checked against the official repository).

`<task>/metadata.json`: an object keyed by audio file name, each value `{file, instruction,
label, …}`; or a JSON array / JSONL of rows with `file` or `audio`, `instruction`, `label`.
Prompt: the instruction as given (it carries its options), or the MCQ prompt when the row gives
`choices`. Filled: `sub-category` = the task name (row `task_name`, else a row `task` that is not
an MMAU task, else `dataset`, else the metadata.json's directory name or the file's stem);
`task` = the row's `task` when it is sound/music/speech, else "speech"; `choices` = the row's,
else the task's label set (sorted distinct labels of that task's rows in the file); `answer` =
label; `difficulty` = the row's when valid, else "medium" (a placeholder: Dynamic-SUPERB has no
difficulty). A row `task` that is not an MMAU task is kept as `task_name`. Scored by accuracy on
normalised labels (`scorers.normalize_label`, exact) and by MMAU string match against the
choices, overall and per task, plus `score_mmau` of the file. Meant for classification tasks:
for free-text labels (ASR, captioning) the string-match figure is meaningless.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.evaluate.benchmarks.base import (
    DEFAULT_DIFFICULTY,
    DEFAULT_TASK,
    Adapter,
    BenchItem,
    BenchmarkFormatError,
    BenchSet,
    OnBad,
    _Bad,
    _load,
    _pct,
    _require,
    _str_list,
    resolve_audio,
)
from components.evaluate.mmau import DIFFICULTIES, TASKS, score_mmau
from components.evaluate.scorers import accuracy, string_match
from components.vocab import mcq_prompt


def load_dynamic_superb(path: str | Path, data_root: str | Path, on_bad: OnBad = "error", limit: int | None = None,
                        task_name: str | None = None) -> BenchSet:
    """Dynamic-SUPERB rows (file or audio, instruction, label): a task's metadata.json or a row list."""
    path = Path(path)
    default_name = task_name or (path.parent.name if path.name == "metadata.json" else path.stem)

    def parse(i: int, row: dict[str, Any], root: Path, keyed: bool) -> BenchItem:
        audio = row.get("file") if isinstance(row.get("file"), str) else row.get("audio")
        if audio is None:
            raise _Bad("missing 'file' (or 'audio')")
        instruction = _require(row, "instruction")
        label = _require(row, "label")
        if not label.strip():
            raise _Bad("'label' is empty")
        apath = resolve_audio(root, audio)
        out = dict(row)
        task = row.get("task")
        if isinstance(task, str) and task not in TASKS:
            out["task_name"] = out.get("task_name") or task
        name = out.get("task_name") or row.get("dataset") or default_name
        if not isinstance(name, str):
            raise _Bad(f"task name must be a string, got {name!r}")
        given = row.get("choices")
        if given is not None:
            given = _str_list(row, "choices")
        out.update({"task": task if task in TASKS else DEFAULT_TASK, "sub-category": name, "answer": label,
                    "difficulty": row["difficulty"] if row.get("difficulty") in DIFFICULTIES else DEFAULT_DIFFICULTY})
        if given is not None:
            out["choices"] = given
        prompt = mcq_prompt({"question": instruction, "choices": given}) if given else instruction
        return BenchItem(i, audio, apath, prompt, out)

    loaded = _load("dynamic-superb", path, data_root, on_bad, limit, parse)
    labels: dict[str, set[str]] = defaultdict(set)
    for item in loaded.items:
        labels[item.row["sub-category"]].add(item.row["answer"])
    for item in loaded.items:  # the task's label set stands in for missing choices
        item.row.setdefault("choices", sorted(labels[item.row["sub-category"]]))
    return loaded


def dynamic_superb_scores(rows: Sequence[Mapping[str, Any]], prediction_key: str) -> dict[str, Any]:
    """The Dynamic-SUPERB part of the report: accuracy overall and per task, then `score_mmau`."""
    mmau = score_mmau(rows, prediction_key=prediction_key)  # also checks answer/choices/task
    scored = [r for r in rows if prediction_key in r]
    by_task: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for i, r in enumerate(rows):
        if prediction_key not in r:
            continue
        if not isinstance(r.get("sub-category"), str):
            raise BenchmarkFormatError(f"row {i}: 'sub-category' (the task name) must be a string")
        by_task[r["sub-category"]].append(r)

    def acc(group: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {"exact": round(accuracy([r[prediction_key] for r in group], [r["answer"] for r in group]), 2),
                "string_match": _pct(sum(string_match(r["answer"], r[prediction_key], r["choices"]) for r in group),
                                     len(group)),
                "n": len(group)}

    # mmau last in the report, as the results layout has always printed it
    return {"accuracy": acc(scored), "per_task": {name: acc(group) for name, group in by_task.items()}, "mmau": mmau}


ADAPTER = Adapter("dynamic-superb", load_dynamic_superb, dynamic_superb_scores, max_new_tokens=32)
